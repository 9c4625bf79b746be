"""AVST and its baseline: layout, a reference vector computed with the original's code, B*T = 1, attention
outputs, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from avst_spec_vector import fill_spec_weights, normals

from avst.model import AVST, AVSTBaseline, init_from_grounding, load_avst_state, organize_match
from avst.model.grounding import spatial_grounding
from benchkit.batches import avst_batch
from grounding_gen.model import GroundingNet

# Non-visual_net modules of AVST in registration order (original net_grd_avst/net_avst.py, AVQA_Fusion_Net.__init__).
AVST_MODULE_ORDER = [
    "fc_a1", "fc_a2", "fc_a1_pure", "fc_a2_pure", "visual_net", "fc_v", "fc_st", "fc_fusion", "fc",
    "fc_aq", "fc_vq", "linear11", "linear12", "linear21", "linear22", "norm1", "norm2", "norm3",
    "attn_a", "attn_v", "question_encoder", "fc_ans", "fc_gl", "fc1", "fc2", "fc3", "fc4",
]  # fmt: skip


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def spec_inputs() -> tuple[torch.Tensor, ...]:
    question = np.random.RandomState(1003).randint(1, 93, size=(2, 14))
    question[0, 9:] = 0
    question[1, 7:] = 0
    return (
        normals(1000, (2, 10, 128)),
        normals(1001, (2, 10, 512, 14, 14)).abs(),
        normals(1002, (2, 10, 512, 14, 14)).abs(),
        torch.from_numpy(question).long(),
    )


def small_inputs(b: int, t: int, hw: int = 4, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(audio, visual_posi, visual_nega, question) of a random batch with hw x hw maps."""
    batch = avst_batch(batch=b, frames=t, hw=hw, seed=seed)
    return tuple(batch[k] for k in ("audio", "visual_posi", "visual_nega", "question"))


@pytest.fixture(scope="module")
def spec_avst() -> AVST:
    return fill_spec_weights(AVST())


@pytest.fixture(scope="module")
def random_avst() -> AVST:
    torch.manual_seed(0)
    return AVST().eval()


def test_state_dict_layout_matches_the_original():
    avst, baseline = AVST(), AVSTBaseline()
    keys = list(avst.state_dict())
    assert len(keys) == 184 and n_params(avst) == 22_300_948
    order = list(dict.fromkeys(k.split(".")[0] for k in keys))
    assert order == AVST_MODULE_ORDER
    assert keys[8:10] == ["visual_net.conv1_a.weight", "visual_net.conv1.weight"]
    shapes = avst.state_dict()
    assert shapes["question_encoder.word2vec.weight"].shape == (93, 512)
    assert shapes["question_encoder.lstm.weight_ih_l0"].shape == (2048, 512)
    assert shapes["attn_v.in_proj_weight"].shape == (1536, 512)
    assert shapes["fc_ans.weight"].shape == (42, 512)
    assert shapes["fc_v.weight"].shape == (512, 2048)
    base_keys = list(baseline.state_dict())
    assert len(base_keys) == 180 and n_params(baseline) == 21_972_244
    assert base_keys == [k for k in keys if "_pure" not in k]


def test_spec_test_vector(spec_avst):
    with torch.no_grad():
        out_qa, posi, nega = spec_avst(*spec_inputs())
    expected_qa = [
        [0.0013898, 0.0891528, 0.2476767, 0.0667911, 0.1074236, 0.0473401, 0.3002560, 0.1012787],
        [0.0014302, 0.0450479, 0.2210744, 0.1087165, 0.1228033, 0.0725820, 0.3141942, 0.1378253],
    ]
    assert out_qa.shape == (2, 42) and posi.shape == (20, 2) and nega.shape == (20, 2)
    torch.testing.assert_close(out_qa[:, :8], torch.tensor(expected_qa), atol=1e-6, rtol=0)
    assert out_qa.argmax(1).tolist() == [6, 6]
    assert out_qa.sum().item() == pytest.approx(1.785464, abs=1e-5)
    assert out_qa.abs().sum().item() == pytest.approx(9.78435, abs=1e-5)
    torch.testing.assert_close(
        posi[:2], torch.tensor([[0.22611, 0.31296], [0.12851, 0.30104]]), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        nega[:2], torch.tensor([[0.23131, 0.32489], [0.11851, 0.29807]]), atol=1e-5, rtol=0
    )
    assert posi.sum().item() == pytest.approx(10.397607, abs=1e-5)
    assert nega.sum().item() == pytest.approx(10.386000, abs=1e-5)


def test_baseline_vector_from_the_original():
    # Expected numbers: the original net_grd_baseline AVQA_Fusion_Net run on the same recipe
    # (its own 180-entry order) and inputs, torch 2.14.1 CPU.
    model = fill_spec_weights(AVSTBaseline())
    audio, posi, _, question = spec_inputs()
    with torch.no_grad():
        out_qa, none_posi, none_nega = model(audio, posi, None, question)
    assert none_posi is None and none_nega is None
    expected = [
        [-0.2973476, 0.0132966, -0.0330634, 0.0322304, -0.0266516, -0.0738760, 0.1321779, -0.0861775],
        [-0.2910016, 0.0070094, -0.0423227, 0.0250184, -0.0471144, -0.0401112, 0.1800811, -0.1485588],
    ]
    torch.testing.assert_close(out_qa[:, :8], torch.tensor(expected), atol=1e-6, rtol=0)
    assert out_qa.sum().item() == pytest.approx(-3.2139044, abs=1e-5)


@pytest.mark.parametrize("model_cls", [AVST, AVSTBaseline])
def test_single_frame_batch_gives_the_numbers_of_a_bigger_batch(model_cls):
    torch.manual_seed(1)
    model = model_cls().eval()
    inputs = small_inputs(3, 1)
    with torch.no_grad():
        full = model(*inputs)
        for i in range(3):
            alone = model(*(x[i : i + 1] for x in inputs))
            torch.testing.assert_close(alone[0], full[0][i : i + 1], atol=1e-6, rtol=0)
            if model_cls is AVST:
                torch.testing.assert_close(alone[1], full[1][i : i + 1], atol=1e-6, rtol=0)
                torch.testing.assert_close(alone[2], full[2][i : i + 1], atol=1e-6, rtol=0)


def test_negatives_do_not_change_the_answer(random_avst):
    audio, posi, nega, question = small_inputs(2, 3)
    with torch.no_grad():
        a = random_avst(audio, posi, nega, question)
        b = random_avst(audio, posi, nega.flip(0) * 2, question)
        c = random_avst(audio, posi, None, question)
    torch.testing.assert_close(a[0], b[0], atol=0, rtol=0)
    torch.testing.assert_close(a[1], b[1], atol=0, rtol=0)
    assert not torch.allclose(a[2], b[2])
    torch.testing.assert_close(c[0], a[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(c[1], a[1], atol=1e-6, rtol=0)
    assert c[2] is None


def test_attention_maps_and_default_outputs(random_avst):
    audio, posi, nega, question = small_inputs(2, 3)
    target = 5
    with torch.no_grad():
        a = random_avst.encode_audio(audio)
        posi[:, :, :, target // 4, target % 4] = 50 * a  # one region points along the audio vector
        plain = random_avst(audio, posi, nega, question)
        *outputs, attention = random_avst(audio, posi, nega, question, return_attention=True)
    for x, y in zip(plain, outputs):
        torch.testing.assert_close(x, y, atol=0, rtol=0)
    spatial = attention["spatial"]
    assert spatial.shape == (6, 16)
    torch.testing.assert_close(spatial.sum(1), torch.ones(6))
    assert spatial.argmax(1).tolist() == [target] * 6
    for name in ("temporal_visual", "temporal_audio"):
        assert attention[name].shape == (2, 3)
        torch.testing.assert_close(attention[name].sum(1), torch.ones(2))


def literal_grounding(visual: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The original AVQA_Fusion_Net.forward's grounding step as written: avgpool, normalise regions and audio,
    cosine, softmax, weighted sum."""
    n, c, h, w = visual.shape
    g = F.adaptive_avg_pool2d(visual, 1).reshape(n, c)
    regions = F.normalize(visual.reshape(n, c, h * w).permute(0, 2, 1), dim=2)
    p = F.softmax(torch.matmul(regions, F.normalize(audio.unsqueeze(-1), dim=1)).squeeze(-1), dim=-1)
    attended = torch.matmul(p.unsqueeze(1), regions).squeeze(1)
    return torch.tanh(torch.cat((g, attended), dim=-1)), p


def test_folded_grounding_equals_its_definition_with_gradients():
    g = torch.Generator().manual_seed(3)
    visual = torch.rand(6, 512, 5, 5, generator=g, dtype=torch.float64)
    visual[0, :, 1, 1] = 0  # an all-zero region: the eps clamp path
    audio = torch.randn(6, 512, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(6, 1024, generator=g, dtype=torch.float64)
    ours, p_ours = spatial_grounding(visual, audio)
    grad_ours = torch.autograd.grad((ours * weights).sum() + p_ours[:, 3].sum(), audio)[0]
    ref, p_ref = literal_grounding(visual, audio)
    grad_ref = torch.autograd.grad((ref * weights).sum() + p_ref[:, 3].sum(), audio)[0]
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(p_ours, p_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(grad_ours, grad_ref, atol=1e-12, rtol=0)


def test_organize_match_interleaves_like_batch_organize():
    posi, nega = torch.arange(6.0).reshape(3, 2), -torch.arange(6.0).reshape(3, 2)
    logits, labels = organize_match(posi, nega)
    assert logits.tolist() == [[0, 1], [-0, -1], [2, 3], [-2, -3], [4, 5], [-4, -5]]
    assert labels.tolist() == [1, 0, 1, 0, 1, 0] and labels.dtype == torch.int64


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda x: (x[0][..., :64], *x[1:]), "audio must be"),
        (lambda x: (x[0], x[1][:, :2], *x[2:]), "visual_posi must be"),
        (lambda x: (x[0], x[1], x[2][:1], x[3]), "visual_nega must have"),
        (lambda x: (*x[:3], x[3].float()), "question must be"),
    ],
)
def test_bad_input_shapes_are_named(random_avst, mutate, message):
    with pytest.raises(ValueError, match=message):
        random_avst(*mutate(small_inputs(2, 3)))


def test_authors_checkpoint_spellings_load_strictly(tmp_path, random_avst):
    state = random_avst.state_dict()
    authors = {"module." + k.replace("fc1.", "fusion_fc1.") if k.startswith("fc1.") else "module." + k: v
               for k, v in state.items()}  # fmt: skip
    assert "module.fusion_fc1.weight" in authors
    path = tmp_path / "avst.pt"
    torch.save(authors, path)
    for source in (path, authors, {"model": state, "epoch": 3}):
        model = AVST().eval()
        load_avst_state(model, source)
        inputs = small_inputs(2, 3)
        with torch.no_grad():
            for x, y in zip(model(*inputs), random_avst(*inputs)):
                torch.testing.assert_close(x, y, atol=0, rtol=0)


def test_checkpoint_with_other_vocabulary_is_a_clear_error(tmp_path, random_avst):
    path = tmp_path / "avst.pt"
    torch.save({"module." + k: v for k, v in random_avst.state_dict().items()}, path)
    with pytest.raises(ValueError, match=r"avst\.pt.*word2vec.*93 question words.*model has 95"):
        load_avst_state(AVST(vocab_size=95), path)
    with pytest.raises(ValueError, match=r"avst\.pt.*fc_ans.*42 answers.*model has 40"):
        load_avst_state(AVST(num_answers=40), path)


def test_checkpoint_key_mismatch_names_file_and_keys(tmp_path, random_avst):
    state = dict(random_avst.state_dict())
    del state["fc_gl.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(
        ValueError, match=r"broken\.pt does not fit AVST: missing: fc_gl\.bias; unexpected: extra"
    ):
        load_avst_state(AVST(), path)
    with pytest.raises(ValueError, match="missing: fc_a1_pure.weight"):
        load_avst_state(AVST(), AVSTBaseline().state_dict())
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_avst_state(AVST(), tmp_path / "nowhere.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"truncated\.pt is not a readable checkpoint"):
        load_avst_state(AVST(), truncated)
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list\.pt holds a list, not a checkpoint dict"):
        load_avst_state(AVST(), tmp_path / "list.pt")


def test_stage2_initialisation_from_grounding(authors_grounding_checkpoint):
    grounding, path = authors_grounding_checkpoint
    model = AVST()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    written = init_from_grounding(model, path)
    assert len(written) == 18
    after, source = model.state_dict(), grounding.state_dict()
    for module in ("fc_a1", "fc_a2", "fc_gl", "fc1", "fc2", "fc3", "fc4"):
        for part in ("weight", "bias"):
            assert torch.equal(after[f"{module}.{part}"], source[f"{module}.{part}"])
    for module in ("fc_a1", "fc_a2"):
        for part in ("weight", "bias"):
            assert torch.equal(after[f"{module}_pure.{part}"], source[f"{module}.{part}"])
    untouched = [k for k in after if k not in written]
    assert untouched and all(torch.equal(after[k], before[k]) for k in untouched)
    assert len(init_from_grounding(AVSTBaseline(), path)) == 14


def test_stage2_initialisation_needs_every_tensor():
    state = GroundingNet().state_dict()
    del state["fc3.weight"]
    with pytest.raises(ValueError, match="not a grounding checkpoint: missing fc3.weight"):
        init_from_grounding(AVST(), state)


def test_bf16_autocast_trains_and_stays_close(random_avst):
    # oneDNN has no bf16 LSTM on many CPUs: the question encoder must keep it in fp32.
    inputs = small_inputs(2, 3)
    with torch.no_grad():
        reference = random_avst(*inputs)[0]
    model = AVST().train()
    model.load_state_dict(random_avst.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_qa, posi, nega = model(*inputs)
        logits, labels = organize_match(posi, nega)
        loss = F.cross_entropy(out_qa, torch.tensor([1, 2])) + 0.5 * F.cross_entropy(logits, labels)
    loss.backward()
    assert torch.isfinite(loss) and model.question_encoder.lstm.weight_hh_l0.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(model(*inputs)[0].float(), reference, atol=2e-2, rtol=0)


def test_float64_model_agrees_with_float32(random_avst):
    inputs = small_inputs(2, 3)
    model = AVST().double().eval()
    model.load_state_dict(random_avst.state_dict())
    wide = tuple(x.double() if x.is_floating_point() else x for x in inputs)
    with torch.no_grad():
        for narrow, exact in zip(random_avst(*inputs), model(*wide)):
            assert exact.dtype == torch.float64
            torch.testing.assert_close(narrow.double(), exact, atol=1e-5, rtol=0)
