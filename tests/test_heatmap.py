"""Heat maps land where the attention is, in the right colours (decoded from the written PNG).

Oracles: an attention map with one hot cell in the top-right corner (row 0, column 13 of 14: index h*14 + w,
as the original AVQA_Fusion_Net.forward flattens it) must come out hottest in the top-right of the image; the
JET scale's defining colours (dark blue, cyan, yellow, dark red; OpenCV COLORMAP_JET) with hot = red; frames
stay RGB (the original's cv2 blend in grounding_gen/main_grd_gen_vis.py swapped red and blue).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from avst.heatmap import jet, overlay, save_png

SIDE, PIXELS = 14, 224


def top_right_map(side: int = SIDE) -> np.ndarray:
    w = np.full((side, side), 1.0 / 400, np.float32)
    w[0, side - 1] = 0.5
    return w.reshape(-1)


def redness(png) -> np.ndarray:
    rgb = np.asarray(Image.open(png).convert("RGB"), np.int32)
    assert rgb.shape == (PIXELS, PIXELS, 3)
    return rgb[..., 0] - rgb[..., 2]


def assert_hot_top_right(png) -> None:
    red = redness(png)
    y, x = np.unravel_index(np.argmax(red), red.shape)
    assert y < PIXELS // 4 and x >= PIXELS * 3 // 4, f"hottest pixel at (row {y}, col {x})"
    assert red[:12, -12:].mean() > 40  # hot = red (R > B) in the top-right cell
    q = PIXELS // 4
    for corner in (red[-q:, :q], red[:q, :q], red[-q:, -q:]):
        assert corner.mean() < -20  # cold = blue elsewhere


@pytest.mark.parametrize("value,rgb", [(0, (0, 0, 128)), (96, (0, 255, 255)), (159, (255, 255, 0)),
                                       (255, (128, 0, 0))])
def test_jet_defining_colours(value, rgb):
    assert np.abs(jet(np.array([value])).astype(int)[0] - rgb).max() <= 4


def test_overlay_png_hot_cell_top_right(tmp_path):
    assert_hot_top_right(save_png(tmp_path / "grey.png", overlay(None, top_right_map())))
    frame = np.full((90, 160, 3), 128, np.uint8)  # not square: resized to 224x224 like the original
    assert_hot_top_right(save_png(tmp_path / "frame.png", overlay(frame, top_right_map())))


def test_overlay_keeps_frame_colours_rgb(tmp_path):
    red = np.zeros((PIXELS, PIXELS, 3), np.uint8)
    red[..., 0] = 255
    flat = np.full(SIDE * SIDE, 1 / 196, np.float32)  # no peak: the heat is JET's coldest (dark blue)
    rgb = np.asarray(Image.open(save_png(tmp_path / "red.png", overlay(red, flat))).convert("RGB"), np.int32)
    # 0.4 * (0, 0, 128) + 0.6 * (255, 0, 0)
    assert np.abs(rgb - np.array([153, 0, 51])).max() <= 2


def test_avst_spatial_attention_is_row_major_and_drawn_top_right(tmp_path):
    """A region vector aligned with the audio at (h=0, w=13) of the 14x14 map -> that cell is the peak."""
    from avst.model import AVST

    torch.manual_seed(0)
    model = AVST().eval()
    audio = torch.randn(1, 2, 128)
    with torch.no_grad():
        a = model.fc_a2(torch.relu(model.fc_a1(audio)))  # AVQA_Fusion_Net.forward: the audio the grounding sees
    visual = -a[..., None, None].repeat(1, 1, 1, SIDE, SIDE)
    visual[..., 0, SIDE - 1] = a
    question = torch.ones(1, 14, dtype=torch.long)
    with torch.no_grad():
        spatial = model(audio, visual, None, question, return_attention=True)[3]["spatial"]
    assert spatial.shape == (2, SIDE * SIDE)
    assert [divmod(int(i), SIDE) for i in spatial.argmax(1)] == [(0, SIDE - 1)] * 2
    assert_hot_top_right(save_png(tmp_path / "t.png", overlay(None, spatial[0].numpy())))


class BrightnessMap(nn.Module):
    """Stand-in for the grounding net's ResNet: channel 0 = each 16x16 block's brightness, channel 1 = 1."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        bright = nn.functional.avg_pool2d(frames.mean(1, keepdim=True), PIXELS // SIDE)
        rest = torch.zeros(frames.shape[0], 510, SIDE, SIDE)
        return torch.cat((bright, torch.ones_like(bright), rest), 1)


def test_grounding_vis_puts_a_bright_top_right_patch_top_right(tmp_path, monkeypatch):
    """main_grd_gen_vis end to end: frames on disk -> net -> PNG; the audio vector is fixed to the
    first axis, so the cosine grows with each block's brightness and the bright patch must be hottest."""
    import grounding_gen.model as gmodel
    from engine.checkpoint import save_checkpoint
    from grounding_gen import main_grd_gen_vis

    monkeypatch.setattr(gmodel, "resnet18_stride1", lambda weights=None: BrightnessMap())
    state = gmodel.GroundingNet().state_dict()
    state["fc_a1.weight"].zero_()
    state["fc_a1.bias"].zero_()
    state["fc_a1.bias"][0] = 1.0
    state["fc_a2.weight"].copy_(torch.eye(512))
    state["fc_a2.bias"].zero_()
    save_checkpoint(tmp_path / "g.pt", {"model": state})
    (tmp_path / "vggish").mkdir()
    np.save(tmp_path / "vggish" / "v1.npy", np.random.RandomState(0).randn(60, 128).astype(np.float32))
    frame = np.full((PIXELS, PIXELS, 3), 60, np.uint8)
    frame[:32, -32:] = 255
    (tmp_path / "frames" / "v1").mkdir(parents=True)
    for i in range(10):
        Image.fromarray(frame).save(tmp_path / "frames" / "v1" / f"{i + 1:06d}.jpg", quality=95)
    written = main_grd_gen_vis.main(["--checkpoint", str(tmp_path / "g.pt"), "--audio_dir", str(tmp_path / "vggish"),
                                     "--video_dir", str(tmp_path / "frames"), "--videos", "v1", "--frames", "0", "3",
                                     "--out_dir", str(tmp_path / "vis"), "--device", "cpu"])
    assert [p.name for p in written] == ["v1_00.png", "v1_03.png"]
    for png in written:
        assert_hot_top_right(png)
