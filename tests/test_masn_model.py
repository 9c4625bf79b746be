"""MASN model: structure against the original model/masn.py (names, shapes, order), numbers against a plain
float64 re-derivation of its formulas, and the properties the original is known to have."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchkit.batches import masn_video
from benchkit.weights import perturb as perturb_weights
from engine.checkpoint import CheckpointError
from masn.checkpoint import load_masn_state
from masn.losses import MultipleChoiceLoss, build_criterion
from masn.model import MASN, make_mask
from masn.model.linear_weightdrop import WeightDropLinear

D, FEAT, V = 512, 24, 30  # D: the original width (the only one the original runs at)


def tiny(answers=None, v_max_len=6, dtype=torch.float64, perturb=True, seed=0, hidden=D):
    torch.manual_seed(seed)
    emb = np.random.RandomState(seed).normal(size=(V, 300))
    model = MASN(V, 1, emb, FEAT, FEAT, hidden, dropout_p=0.3, answer_vocab_size=answers, q_max_len=8,
                 v_max_len=v_max_len).to(dtype).eval()
    if perturb:  # as the reference harness: spread the outputs (and move a_2, b_2, g away from their init)
        perturb_weights(model, torch.Generator().manual_seed(seed + 1))
    return model


def video(B, T, N=3, lens=None, seed=0, dtype=torch.float64):
    lens = torch.tensor(lens if lens is not None else [T] * B)
    return [t.to(dtype) for t in masn_video(torch.Generator().manual_seed(seed), B, T, N, FEAT, lens)] + [lens]


def sentences(lens, width=8, seed=0):
    g = torch.Generator().manual_seed(seed + 100)
    lens = torch.tensor(lens)
    tok = torch.zeros(*lens.shape, width, dtype=torch.long)
    for idx in np.ndindex(*lens.shape):
        tok[idx][: lens[idx]] = torch.randint(2, V, (int(lens[idx]),), generator=g)
    return tok, lens


# ---------------------------------------------------------------- plain float64 reference (model_block)
def ref_mask(width, lengths):
    m = torch.ones(len(lengths), width, dtype=torch.float64)
    for i, l in enumerate(lengths.tolist()):
        m[i, min(width - 1, l):] = 0
    return m


def ref_ln(x, a, b):  # custom LayerNorm: unbiased std, eps added to the std
    mu = x.mean(-1, keepdim=True)
    sd = ((x - mu) ** 2).sum(-1, keepdim=True).div(x.size(-1) - 1).sqrt()
    return a * (x - mu) / (sd + 1e-6) + b


def ref_ln_plain(x):  # nn.LayerNorm without affine: biased variance, eps inside the sqrt
    mu = x.mean(-1, keepdim=True)
    return (x - mu) / ((x - mu).pow(2).mean(-1, keepdim=True) + 1e-5).sqrt()


def ref_lstm(x, s, prefix, reverse):
    wi, wh = s[f"{prefix}weight_ih_l0{reverse}"], s[f"{prefix}weight_hh_l0{reverse}"]
    h = c = torch.zeros(wh.shape[1], dtype=torch.float64)
    bias = s[f"{prefix}bias_ih_l0{reverse}"] + s[f"{prefix}bias_hh_l0{reverse}"]
    outs = []
    for xt in (x.flip(0) if reverse else x):
        i, f, g, o = (wi @ xt + wh @ h + bias).chunk(4)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    outs = torch.stack(outs)
    return (outs.flip(0) if reverse else outs), h


def wn(s, key, per_row):
    v, g = s[key + "weight_v"], s[key + "weight_g"]
    return g * v / (v.norm(dim=1, keepdim=True) if per_row else v.norm())


def ref_model_block(s, vid, tok, qlen):
    """One pass of the original model_block, from the formulas of model/masn.py and its modules (float64)."""
    ra, ia, ro, bb, io, vlen = vid
    B, T, N = ro.shape[:3]
    D = s["embedding_proj.1.weight"].shape[0]
    lin = lambda x, k: x @ s[k + ".weight"].T + s[k + ".bias"]  # noqa: E731
    q_mask = ref_mask(tok.size(1), qlen)
    v_mask = ref_mask(T, vlen)
    q_emb = F.relu(s["glove.weight"][tok] @ s["embedding_proj.1.weight"].T)
    L = int(qlen.max())
    q_out = torch.zeros(B, L, D, dtype=torch.float64)
    q_hid = torch.zeros(B, D, dtype=torch.float64)
    p = "sentence_encoder.rnn."
    for b in range(B):
        x = q_emb[b, : qlen[b]]
        fw, hf = ref_lstm(x, s, p, "")
        bw, hb = ref_lstm(x, s, p, "_reverse")
        q_out[b, : qlen[b]] = F.relu(torch.cat([fw, bw], 1) @ s["sentence_encoder.compress_output.weight"].T)
        q_hid[b] = F.relu(s["sentence_encoder.compress_hn_bi.weight"] @ torch.cat([hf, hb]))
    q_mask = q_mask[:, :L]

    def stream(obj, glob, comp_l, comp_g, proj, vproj):
        obj = obj @ s[f"compress_{comp_l}.weight_raw"].T
        glob = glob @ s[f"compress_{comp_g}.weight_raw"].T + s["pos_enc.pe"][:T]
        box = lin(bb, "bbox_location_encoding")
        pos = s["pos_location_encoding.pe"][:T][None, :, None, :] * v_mask[:, :, None, None]
        local = lin(torch.cat([obj, box, pos.expand(B, T, N, 64)], 3), proj)
        return lin(torch.cat([local, glob[:, :, None].expand(B, T, N, D)], 3), vproj).reshape(B, T * N, D)

    node_mask = v_mask.repeat_interleave(N, dim=1)
    mm = node_mask[:, :, None] * node_mask[:, None, :]

    def graph(v, adj, gcn):
        h = F.relu(F.relu(v @ wn(s, f"{adj}.edge_layer_1.", True).T) @ wn(s, f"{adj}.edge_layer_2.", True).T)
        a = torch.softmax(100 * (h @ h.transpose(1, 2) - 1e10 * (1 - mm)), -1) * mm
        x = v
        for i in range(3):
            x = F.relu(ref_ln_plain(a @ (x @ s[f"{gcn}.layers.{i}.weight.weight"].T)))
        return ref_ln_plain(v + x)

    def fcnet(x, key, relu=True):
        y = x @ wn(s, key + ".main.1.", False).T + s[key + ".main.1.bias"]
        return F.relu(y) if relu else y

    def ban(v, q, key):
        hm = s[key + ".v_att.logits.h_mat_v"]
        hm = s[key + ".v_att.logits.h_mat_g"] * hm / hm.norm()
        vv, qq = fcnet(v, key + ".v_att.logits.v_net"), fcnet(q, key + ".v_att.logits.q_net")
        logits = torch.einsum("hk,bik,bjk->bhij", hm[0, :, 0], vv, qq) + s[key + ".v_att.logits.h_bias"]
        logits = logits - 1e10 * (1 - node_mask[:, None, :, None]) - 1e10 * (1 - q_mask[:, None, None, :])
        att = torch.softmax(logits.flatten(2), -1).view_as(logits)
        att = att * node_mask[:, None, :, None] * q_mask[:, None, None, :]
        for g in range(4):
            vg, qg = fcnet(v, f"{key}.b_net.{g}.v_net"), fcnet(q, f"{key}.b_net.{g}.q_net")
            bg = torch.einsum("bik,bij,bjk->bk", vg, att[:, g], qg)
            q = q + fcnet(bg, f"{key}.q_prj.{g}", relu=False)[:, None]
        return q

    appr = graph(stream(ro, ra, "appr_local", "appr_global", "appr_local_proj", "appr_v"), "appr_adj", "appr_gcn")
    motion = graph(stream(io, ia, "motion_local", "motion_global", "motion_local_proj", "motion_v"),
                   "motion_adj", "motion_gcn")
    U = torch.cat([ban(appr, q_out, "appr_vq_interact"), ban(motion, q_out, "motion_vq_interact")], 1)
    m2 = torch.cat([q_mask, q_mask], 1)
    f = "motion_appr_fusion."
    graphs = []
    for name, cols in (("appr", torch.arange(2 * L) < L), ("motion", torch.arange(2 * L) >= L),
                       ("all", torch.ones(2 * L, dtype=torch.bool))):
        mask = m2[:, :, None] * m2[:, None, :] * cols.double()
        k, q = lin(U, f + f"{name}_att_score.linear_k"), lin(U, f + f"{name}_att_score.linear_q")
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(D) - 1e10 * (1 - mask), -1) * mask
        x = att @ lin(U, f + f"{name}_linear.0")
        graphs.append(ref_ln(U + x, s[f + f"{name}_norm.a_2"], s[f + f"{name}_norm.b_2"]))
    keys = torch.stack([g.sum(1) for g in graphs], 1)  # sum over all 2L positions, padding included
    k = lin(keys, f + "ques_guide_att.linear_k")
    q = lin(q_hid, f + "ques_guide_att.linear_q")
    alpha = torch.softmax(torch.einsum("bd,bgd->bg", q, k) / math.sqrt(D), -1)
    fused = sum(alpha[:, i, None, None] * graphs[i] for i in range(3))
    ffn = lin(F.relu(lin(fused, f + "ffn.mlp.fc.linear")), f + "ffn.mlp.linear")
    fused = ref_ln(fused + ffn, s[f + "norm.a_2"], s[f + "norm.b_2"])
    a = lin(F.relu(lin(fused, "attflat.mlp.fc.linear")), "attflat.mlp.linear")[..., 0]
    a = torch.softmax(a - 1e10 * (1 - m2), 1) * m2
    z = lin((a[..., None] * fused).sum(1), "attflat.linear_merge")
    return lin(z, "fc")


# ---------------------------------------------------------------- structure
def spec_keys(T, n_out):
    """The 176 state_dict entries of the original MASN, in order."""
    keys = [(f"compress_{n}.weight_raw", (512, 2048)) for n in
            ("appr_local", "motion_local", "appr_global", "motion_global")]
    keys += [("glove.weight", (100, 300)), ("embedding_proj.1.weight", (512, 300))]
    se = "sentence_encoder."
    keys += [(se + "compress_hn_layers.weight", (512, 512)), (se + "compress_hn_layers_bi.weight", (512, 1024)),
             (se + "compress_hn_bi.weight", (512, 1024)), (se + "compress_output.weight", (512, 1024))]
    for sfx in ("", "_reverse"):
        keys += [(f"{se}rnn.weight_ih_l0{sfx}", (2048, 512)), (f"{se}rnn.weight_hh_l0{sfx}", (2048, 512)),
                 (f"{se}rnn.bias_ih_l0{sfx}", (2048,)), (f"{se}rnn.bias_hh_l0{sfx}", (2048,))]
    keys += [("bbox_location_encoding.weight", (64, 6)), ("bbox_location_encoding.bias", (64,)),
             ("pos_location_encoding.pe", (T, 64))]
    for n in ("appr_local_proj", "motion_local_proj"):
        keys += [(n + ".weight", (512, 640)), (n + ".bias", (512,))]
    keys.append(("pos_enc.pe", (T, 512)))
    for n in ("appr_v", "motion_v"):
        keys += [(n + ".weight", (512, 1024)), (n + ".bias", (512,))]
    for s in ("appr", "motion"):
        for e in (1, 2):
            keys += [(f"{s}_adj.edge_layer_{e}.weight_g", (512, 1)), (f"{s}_adj.edge_layer_{e}.weight_v", (512, 512))]
        keys += [(f"{s}_gcn.layers.{i}.weight.weight", (512, 512)) for i in range(3)]
    for s in ("appr", "motion"):
        p = f"{s}_vq_interact."
        keys += [(p + "v_att.logits.h_bias", (1, 4, 1, 1)), (p + "v_att.logits.h_mat_g", ()),
                 (p + "v_att.logits.h_mat_v", (1, 4, 1, 1536))]
        for net in ("v_net", "q_net"):
            keys += [(f"{p}v_att.logits.{net}.main.1.bias", (1536,)), (f"{p}v_att.logits.{net}.main.1.weight_g", ()),
                     (f"{p}v_att.logits.{net}.main.1.weight_v", (1536, 512))]
        wn3 = lambda k: [(k + ".bias", (512,)), (k + ".weight_g", ()), (k + ".weight_v", (512, 512))]  # noqa: E731
        for g in range(4):
            keys += wn3(f"{p}b_net.{g}.v_net.main.1") + wn3(f"{p}b_net.{g}.q_net.main.1")
        for g in range(4):
            keys += wn3(f"{p}q_prj.{g}.main.1")
    f = "motion_appr_fusion."
    lin = lambda k, o=512: [(k + ".weight", (o, 512)), (k + ".bias", (o,))]  # noqa: E731
    for n in ("appr_att_score", "motion_att_score", "all_att_score"):
        keys += lin(f + n + ".linear_k") + lin(f + n + ".linear_q")
    for n in ("appr_linear", "motion_linear", "all_linear"):
        keys += lin(f + n + ".0")
    for n in ("appr_norm", "motion_norm", "all_norm"):
        keys += [(f + n + ".a_2", (512,)), (f + n + ".b_2", (512,))]
    keys += lin(f + "ques_guide_att.linear_k") + lin(f + "ques_guide_att.linear_q")
    keys += lin(f + "ffn.mlp.fc.linear") + lin(f + "ffn.mlp.linear")
    keys += [(f + "norm.a_2", (512,)), (f + "norm.b_2", (512,))]
    keys += lin("attflat.mlp.fc.linear") + lin("attflat.mlp.linear", 1) + lin("attflat.linear_merge")
    keys += lin("fc", n_out)
    return keys


@pytest.mark.parametrize("answers,T", [(None, 20), (7, 30)])
def test_state_dict_matches_spec(answers, T):
    model = MASN(100, 1, np.zeros((100, 300)), 2048, 2048, 512, 0.3, answer_vocab_size=answers, v_max_len=T)
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert len(got) == 176
    assert got == spec_keys(T, answers or 1)
    n = sum(p.numel() for name, p in model.named_parameters() if name != "glove.weight")
    assert n == (28_128_232 if answers is None else 28_127_719 + 513 * answers)
    assert not model.glove.weight.requires_grad


def test_make_mask_masks_last_position_even_at_full_length():
    lengths = torch.tensor([5, 2, 9, 0, 4])
    assert torch.equal(make_mask(5, lengths), ref_mask(5, lengths).float())
    assert make_mask(5, lengths)[0].tolist() == [1, 1, 1, 1, 0]


# ---------------------------------------------------------------- numbers
@pytest.mark.parametrize("task,answers,hidden", [("Count", None, D), ("FrameQA", 9, D), ("Count", None, 64)])
def test_open_questions_match_float64_reference(task, answers, hidden):
    """Also at a width other than 512, which the original cannot run (its positional table is 512-d)."""
    model = tiny(answers, hidden=hidden)
    vid = video(3, 6, lens=[6, 2, 4])
    tok, qlen = sentences([8, 3, 5])
    extra = [torch.zeros(3)] + ([torch.zeros(3, dtype=torch.long)] if task == "FrameQA" else [])
    with torch.no_grad():
        out, pred, _ = model(task, *vid, tok, qlen, *extra)
        ref = ref_model_block(model.state_dict(), vid, tok, qlen)
    ref = ref[:, 0] if answers is None else ref
    assert out.shape == ref.shape
    assert ref.std() > 0.01  # outputs differ between samples
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-9)
    if task == "Count":
        assert torch.equal(pred, ref.round().clamp(1, 10).long())
    else:
        assert torch.equal(pred, ref.argmax(1))


def test_multiple_choice_matches_five_reference_passes():
    """Each candidate is scored as in the original's pass over candidate c of every sample,
    whose question padding (and so the sum-pooled fusion keys) depends on the longest candidate c."""
    model = tiny()
    vid = video(3, 5, lens=[5, 3, 1])
    tok, qlen = sentences([[8, 3, 6, 2, 4], [2, 7, 3, 3, 1], [5, 5, 2, 8, 3]])
    with torch.no_grad():
        out, pred, _ = model("Action", *vid, tok, qlen, torch.zeros(3), torch.arange(3))
        ref = torch.stack([ref_model_block(model.state_dict(), vid, tok[:, c], qlen[:, c])[:, 0]
                           for c in range(5)], 1)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-9)
    assert torch.equal(pred, ref.argmax(1))


def test_multiple_choice_outputs_and_gradients_equal_a_five_pass_loop():
    model = tiny(dtype=torch.float32)
    vid = [t.float() if t.is_floating_point() else t for t in video(4, 5, lens=[5, 2, 4, 1])]
    tok, qlen = sentences([[8, 3, 6, 2, 4], [2, 7, 3, 3, 1], [5, 5, 2, 8, 3], [1, 2, 3, 4, 5]])
    target = torch.tensor([0, 3, 4, 1])
    loss = MultipleChoiceLoss()

    def grads(scores):
        model.zero_grad()
        loss(scores, target).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    fast, _, _ = model("Trans", *vid, tok, qlen, target, torch.arange(4))
    g_fast = grads(fast)
    loop = torch.stack([model.scores(*vid, tok[:, c:c + 1], qlen[:, c:c + 1])[:, 0, 0] for c in range(5)], 1)
    g_loop = grads(loop)
    assert (fast - loop).abs().max() <= 1e-5
    assert g_fast.keys() == g_loop.keys() and len(g_fast) > 150
    for name in g_fast:
        scale = max(1.0, g_loop[name].abs().max().item())
        assert (g_fast[name] - g_loop[name]).abs().max() <= 1e-5 * scale, name


def test_batch_of_one_equals_that_sample_in_a_batch():
    model = tiny(answers=5, dtype=torch.float32)
    vid = [t.float() if t.is_floating_point() else t for t in video(3, 6, lens=[3, 6, 2])]
    tok, qlen = sentences([4, 8, 2])  # sample 1 has the longest question: same padding alone or batched
    with torch.no_grad():
        full, _, _ = model("MS-QA", *vid, tok, qlen, torch.zeros(3))
        one, pred, _ = model("MS-QA", *[t[1:2] for t in vid], tok[1:2], qlen[1:2], torch.zeros(1))
    assert one.shape == (1, 5) and pred.shape == (1,)
    assert (one[0] - full[1]).abs().max() <= 1e-5


def test_last_frame_of_a_full_length_video_is_ignored():
    model = tiny(v_max_len=20, dtype=torch.float32)
    vid = [t.float() if t.is_floating_point() else t for t in video(2, 20, N=2, lens=[20, 20])]
    tok, qlen = sentences([5, 7])
    changed = [t.clone() for t in vid]
    for t in changed[:5]:
        t[:, 19] = torch.randn_like(t[:, 19]) * 5
    with torch.no_grad():
        a = model("Count", *vid, tok, qlen, torch.ones(2))[0]
        b = model("Count", *changed, tok, qlen, torch.ones(2))[0]
        changed[0][:, 18] += 1
        c = model("Count", *changed, tok, qlen, torch.ones(2))[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_compressors_never_get_gradients_and_drop_connect_in_training():
    model = tiny(dtype=torch.float32, perturb=False).train()
    vid = [t.float() if t.is_floating_point() else t for t in video(2, 4, lens=[4, 2])]
    tok, qlen = sentences([5, 3])
    out, _, _ = model("Count", *vid, tok, qlen, torch.ones(2))
    build_criterion("Count")(out, torch.tensor([2.0, 5.0])).backward()
    frozen = {f"compress_{n}.weight_raw" for n in ("appr_local", "motion_local", "appr_global", "motion_global")}
    frozen |= {"sentence_encoder.compress_hn_layers.weight", "sentence_encoder.compress_hn_layers_bi.weight",
               "glove.weight"}
    for name, p in model.named_parameters():
        assert (p.grad is None) == (name in frozen), name
    assert len(list(model.parameters())) == 176 - 2  # no transient parameters appear

    layer = model.compress_appr_local
    x = torch.randn(3, FEAT)
    torch.manual_seed(5)
    expected = F.linear(x, F.dropout(layer.weight_raw.detach(), 0.3, training=True))
    torch.manual_seed(5)
    assert torch.equal(layer(x), expected)
    layer.eval()
    assert torch.equal(layer(x), x @ layer.weight_raw.detach().T)


def test_compressors_stay_frozen_without_drop_connect():
    """With dropout 0, F.dropout returns the Parameter itself; the original's Parameter(w) still froze it."""
    layer = WeightDropLinear(FEAT, 4, False, 0.0).train()
    x = torch.randn(3, FEAT, requires_grad=True)
    layer(x).sum().backward()
    assert layer.weight_raw.grad is None and x.grad is not None


def test_original_transient_weight_keys_are_accepted_only_when_equal_to_weight_raw():
    model = tiny(dtype=torch.float32, perturb=False)
    state = model.state_dict()
    with_transient = {}
    for k, v in state.items():
        with_transient[k] = v
        if k.endswith("weight_raw"):
            with_transient[k[:-4]] = v.clone()
    assert len(with_transient) == 180
    model.load_state_dict(with_transient, strict=True)
    with_transient["compress_appr_global.weight"] = state["compress_appr_global.weight_raw"] * 2
    with pytest.raises(RuntimeError, match="compress_appr_global.weight differs"):
        model.load_state_dict(with_transient, strict=True)


def test_bad_task_and_mismatched_checkpoint_are_clear_errors():
    model = tiny(dtype=torch.float32, perturb=False)
    vid = video(2, 4, dtype=torch.float32)
    tok, qlen = sentences([5, 3])
    with pytest.raises(ValueError, match="unknown task 'count'"):
        model("count", *vid, tok, qlen, torch.ones(2))
    with pytest.raises(ValueError, match="takes 10 batch tensors"):
        model("FrameQA", *vid, tok, qlen, torch.ones(2))
    other = MASN(V + 3, 1, np.zeros((V + 3, 300)), FEAT, FEAT, D, answer_vocab_size=4, v_max_len=6)
    with pytest.raises(CheckpointError, match=r"ckpt\.pt: vocabulary size .* is 33 in the checkpoint but 30"):
        load_masn_state(model, other.state_dict(), "ckpt.pt")
    state = other.state_dict()
    state["glove.weight"] = model.state_dict()["glove.weight"]
    with pytest.raises(CheckpointError, match=r"ckpt\.pt: answer head size is 4 in the checkpoint but 1"):
        load_masn_state(model, state, "ckpt.pt")


# ---------------------------------------------------------------- losses
def test_multiple_choice_loss_is_the_original_double_loop():
    g = torch.Generator().manual_seed(3)
    score = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 4, 2, 2, 1, 3])
    expected, pairs = 0.0, 0
    for b in range(6):
        for c in range(5):
            if c != target[b]:
                expected = expected + torch.clamp(1.0 + score[b, c] - score[b, target[b]], min=0)
                pairs += 1
    expected = expected / pairs
    (g_ref,) = torch.autograd.grad(expected, score)
    got = MultipleChoiceLoss()(score, target)
    (g_got,) = torch.autograd.grad(got, score)
    assert pairs == 24
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(g_got, g_ref)
    assert MultipleChoiceLoss()(score[:1], target[:1]).item() == pytest.approx(expected_single(score, target))
    with pytest.raises(ValueError, match="unknown task"):
        build_criterion("Counting")


def expected_single(score, target):
    s, y = score[0].detach(), int(target[0])
    return sum(max(0.0, 1 + s[c].item() - s[y].item()) for c in range(5) if c != y) / 4


# ---------------------------------------------------------------- the original's own numbers
def spec_harness_inputs(task, B=4, T=20, N=10, QL=20, V=100, seed=1):
    """The inputs of the reference harness (same generator calls, same order)."""
    g = torch.Generator().manual_seed(seed)
    ra, ia = torch.randn(B, T, 2048, generator=g), torch.randn(B, T, 2048, generator=g)
    ro = torch.randn(B, T, N, 2048, generator=g)
    bb = torch.rand(B, T, N, 6, generator=g)
    io = torch.randn(B, T, N, 2048, generator=g)
    vlen = torch.tensor([20, 7, 13, 1][:B])
    for b in range(B):
        for x in (ra, ia, ro, bb, io):
            x[b, vlen[b]:] = 0

    def q(lens):
        x = torch.zeros(len(lens), QL, dtype=torch.long)
        for i, n in enumerate(lens):
            x[i, :n] = torch.randint(2, V, (n,), generator=g)
        return x, torch.tensor(lens)

    vid = [ra, ia, ro, bb, io, vlen]
    if task == "Action":
        rows = [[20, 9, 12, 5, 8], [6, 7, 8, 9, 10], [11, 11, 3, 4, 15], [5, 5, 5, 5, 5]]
        xs, ls = zip(*[q(r) for r in rows])
        return vid + [torch.stack(xs), torch.stack(ls), torch.tensor([0, 3, 4, 1]), torch.arange(1, 5)]
    x, n = q([20, 9, 12, 5])
    return vid + [x, n, torch.tensor([1.0, 3.0, 10.0, 2.0])]


@pytest.mark.parametrize("task,total,first", [
    ("Count", 0.234443, [0.135170, -0.073656, 0.146197]),
    ("Action", 1.350909, [0.135170, -0.047383, 0.152532]),
])
def test_reproduces_the_original_reference_run(task, total, first):
    """Spec section 7: the original, seeded with 999, on the harness inputs (torch 2.13, CPU). The same
    seed builds the same initial weights here, so the outputs must be the original's."""
    torch.manual_seed(999)
    model = MASN(100, 1, np.random.RandomState(0).normal(size=(100, 300)), 2048, 2048, 512, dropout_p=0.3,
                 q_max_len=20, v_max_len=20).eval()
    with torch.no_grad():
        out, pred, _ = model(task, *spec_harness_inputs(task))
    assert out.sum().item() == pytest.approx(total, abs=1e-5)
    assert out.flatten()[:3].tolist() == pytest.approx(first, abs=1e-5)
    assert pred.tolist() == ([1, 1, 1, 1] if task == "Count" else [4, 4, 2, 4])
