"""Token merging (feat_script.tome) and the vit-tome extractor: the merge schedule (577 -> 14 on the
full configuration, checked without running it), one merge's conservation of the size-weighted sum,
proportional attention's log(size), r = 0 equal to timm's forward_features (a small ViT built by the
same code), and the preprocessing of TSPM's and QA-TIGER's scripts on an image."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sota_tiny import needs_clip_extra

from benchkit.small_sota import TINY_VIT, photo_like
from feat_script.preprocess import pixels_to_input
from feat_script.recipes import IMAGENET_MEAN, IMAGENET_STD
from feat_script.tome import bipartite_merge, merge_schedule, proportional_attention

pytestmark = needs_clip_extra


def test_the_full_schedule_goes_577_to_14_with_r25_over_23_blocks():
    from feat_script.extract_vit_tome import VitTome, VitTomeConfig

    counts = merge_schedule(577, [25] * 23)
    assert counts[:22] == [577 - 25 * i for i in range(22)]  # 577, 552, ..., 52: 25 a block
    assert counts[21:] == [52, 27, 14]  # then capped at half the non-class tokens: 51 // 2 = 25, 26 // 2 = 13
    assert merge_schedule(577, [25] * 22)[-1] == 27 and merge_schedule(577, [25] * 24)[-1] == 8
    assert merge_schedule(577, [0] * 24) == [577] * 25
    extractor = VitTome(VitTomeConfig(random_init=True))  # nothing is built
    assert extractor.schedule() == counts and extractor.row_shapes() == {"": (14, 1024)}


def test_one_merge_keeps_the_size_weighted_sum_and_the_class_token_first():
    torch.manual_seed(0)
    x, metric = torch.randn(2, 9, 6, dtype=torch.float64), torch.randn(2, 9, 4, dtype=torch.float64)
    size = torch.randint(1, 5, (2, 9, 1)).double()
    merged, merged_size = bipartite_merge(x, size, metric, 3)
    assert merged.shape == (2, 6, 6) and merged_size.shape == (2, 6, 1)
    torch.testing.assert_close((merged * merged_size).sum(1), (x * size).sum(1), rtol=0, atol=1e-12)
    torch.testing.assert_close(merged_size.sum(1), size.sum(1), rtol=0, atol=0)
    torch.testing.assert_close(merged[:, 0], x[:, 0], rtol=0, atol=1e-15)  # the class token, never merged
    assert bipartite_merge(x, size, metric, 0)[0] is x


def test_each_a_token_merges_into_its_most_similar_b_token_as_a_weighted_average():
    # A = tokens 0, 2, 4 (0: class), B = 1, 3, 5; token 4's key points like token 1's, token 2's like 5's
    metric = torch.tensor([[[1.0, 0, 0], [0, 1, 0], [0, 0.2, 1], [1, 0, 0], [0, 1, 0.05], [0, 0, 1]]])
    x = torch.arange(6.0).reshape(1, 6, 1)
    size = torch.tensor([[[1.0], [1], [1], [1], [3], [1]]])
    merged, merged_size = bipartite_merge(x, size, metric, 1)  # the closest pair is (4 -> 1)
    assert merged.flatten().tolist() == pytest.approx([0, 2, (1 * 1 + 4 * 3) / 4, 3, 5])
    assert merged_size.flatten().tolist() == [1, 1, 4, 1, 1]


def test_proportional_attention_adds_log_size_so_a_merged_token_weighs_as_its_copies():
    from timm.layers import Attention

    torch.manual_seed(0)
    attn = Attention(8, num_heads=2, qkv_bias=True).eval()
    tokens = torch.randn(1, 3, 8)
    copies = torch.cat([tokens, tokens[:, 2:].expand(1, 2, 8)], dim=1)  # token 2 three times
    size = torch.tensor([[[1.0], [1.0], [3.0]]])
    with torch.no_grad():
        out, keys = proportional_attention(attn, tokens, size)
        ref, _ = proportional_attention(attn, copies, None)
        plain = attn(tokens)
    torch.testing.assert_close(out, ref[:, :3], rtol=0, atol=1e-6)
    assert (out - plain).abs().max() > 1e-3  # log(3) moved it
    q, k, v = attn.qkv(tokens).reshape(1, 3, 3, 2, 4).permute(2, 0, 3, 1, 4)
    weights = (q @ k.transpose(-1, -2) * 4 ** -0.5 + size.log()[:, None, None, :, 0]).softmax(-1)
    manual = attn.proj((weights @ v).transpose(1, 2).reshape(1, 3, 8))
    torch.testing.assert_close(out, manual, rtol=0, atol=1e-6)
    assert keys.shape == (1, 3, 4)


def _tiny(**config):
    from feat_script.extract_vit_tome import VitTome, VitTomeConfig

    return VitTome(VitTomeConfig(**{"random_init": True, "device": "cpu", "arch_overrides": TINY_VIT, **config}))


def test_without_merging_the_vit_path_equals_timm_forward_features():
    model, _ = _tiny(r=0, merge_layers=4).ready()
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(images), model.vit.forward_features(images), rtol=0, atol=1e-5)


def test_with_merging_each_block_holds_the_scheduled_token_count():
    extractor = _tiny(r=3, merge_layers=3)
    model, _ = extractor.ready()
    seen = []
    for block in model.vit.blocks:
        block.mlp.register_forward_hook(lambda module, inputs, out: seen.append(inputs[0].shape[1]))
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert extractor.schedule() == [17, 14, 11, 8]
    assert seen == [14, 11, 8, 8] and out.shape == (2, 8, 32) == (2, *extractor.row_shapes()[""])


@pytest.mark.parametrize("preprocess", ["tspm", "qa-tiger"])
def test_preprocessing_equals_the_scripts_torchvision_transforms(preprocess):
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    from feat_script.extract_vit_tome import VitTome, VitTomeConfig, tome_preprocess

    frame = photo_like()
    ours = pixels_to_input(torch.from_numpy(tome_preprocess(frame[None], 384, preprocess, 0)),
                           *VitTome(VitTomeConfig(preprocess=preprocess)).pixel_stats)
    if preprocess == "tspm":  # TSPM's extract_tome14.py with timm's default_cfg of the model
        steps = [transforms.Resize(438, interpolation=InterpolationMode.BICUBIC), transforms.CenterCrop(384),
                 transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    else:  # QA-TIGER's dataset transform, used by its extract_tome.py
        steps = [transforms.Resize((384, 384)), transforms.ToTensor(),
                 transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    reference = transforms.Compose(steps)(Image.fromarray(frame))[None]
    assert ours.shape == reference.shape == (1, 3, 384, 384)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)


def test_frames_are_the_middle_of_each_second_and_tspm_compat_repeats_frame_0(tmp_path):
    from feat_script.decode import read_frames
    from feat_script.extract_vit_tome import tome_preprocess, tspm_frame_rows
    from feat_script.sampling import read_fixed60
    from feat_script.synthetic_video import make_pattern_video

    assert tspm_frame_rows(60).tolist() == [0, *range(59)] == np.linspace(0, 58, 60, dtype=int).tolist()
    assert tspm_frame_rows(2).tolist() == [0, 0]
    video = make_pattern_video(tmp_path / "v.mp4", size="80x64", rate=10, seconds=2.5, audio=None, pattern="testsrc2")
    every = read_frames(video)
    assert len(every) == 25
    extractor = _tiny(r=3, merge_layers=3, seconds=5, jpeg_quality=0)
    frames = read_fixed60(video, 5)
    np.testing.assert_array_equal(frames[:3], every[[4, 14, 24]])  # 1-based round((i + 0.5) * 10): 5, 15, 25
    assert all(any((f == g).all() for g in every[20:]) for f in frames[3:])  # then the last (half) second, cycled
    expected = tome_preprocess(frames, 64, "tspm", 0)
    np.testing.assert_array_equal(extractor.load(video)["frames"], expected)
    compat = _tiny(r=3, merge_layers=3, seconds=5, jpeg_quality=0, tspm_compat=True)
    np.testing.assert_array_equal(compat.load(video)["frames"], expected[[0, 0, 1, 2, 3]])


def test_timm_safetensors_weights_load_with_their_classifier_dropped(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(5)
    source = timm.create_model("vit_large_patch16_384", pretrained=False, **TINY_VIT)
    path = tmp_path / "vit.safetensors"
    save_file(source.state_dict(), path)
    model, _ = _tiny(random_init=False, weights=path, r=0, merge_layers=4).ready()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(images), source.forward_features(images), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name, settings, culprit", [
    ("vit-tome", {"seconds": 0}, "--seconds 0"), ("vit-tome", {"seconds": 1, "tspm_compat": True}, "--seconds 1"),
    ("vit-tome", {"r": -1}, "--r -1"), ("vit-tome", {"merge_layers": 25}, "--r 25 --merge-layers 25"),
    ("vit-tome", {"preprocess": "imagenet"}, "--preprocess imagenet"), ("clip", {"seconds": 0}, "--seconds 0"),
])
def test_bad_settings_are_refused_when_the_extractor_is_made(name, settings, culprit):
    from feat_script.base import ConfigError
    from feat_script.registry import extractor_class

    cls = extractor_class(name)
    with pytest.raises(ConfigError, match=f"^{culprit}"):
        cls(cls.Config(random_init=True, **settings))


def test_too_many_merging_blocks_is_one_line_before_anything_is_written(tmp_path, capsys):
    from feat_script.base import main
    from feat_script.registry import extractor_class

    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "v.mp4").write_bytes(b"")
    argv = ["--videos", str(tmp_path / "videos"), "--out", str(tmp_path / "out"), "--random-init",
            "--merge-layers", "25"]
    assert main(extractor_class("vit-tome"), argv) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --r 25 --merge-layers 25: need") and not (tmp_path / "out").exists()
