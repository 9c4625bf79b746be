"""Stage-1 grounding: data (frames, negatives, normalisation), training quirks, heat maps."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from avst.data.annotations import make_record
from avst.data.features import NpyFeatures
from avst.heatmap import jet, overlay
from engine.errors import UserError
from feat_script.recipes import KINETICS_MEAN, KINETICS_STD
from grounding_gen.dataset import GroundingDataset
from grounding_gen.tasks import GroundingTask

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


@pytest.fixture
def frames(tmp_path):
    """Three videos with 12 constant-colour PNG frames each and VGGish rows equal to the row index."""
    (tmp_path / "audio").mkdir()
    for k, colour in enumerate(COLOURS):
        video = f"v{k}"
        folder = tmp_path / "frames" / video
        folder.mkdir(parents=True)
        for f in range(12):
            Image.new("RGB", (32, 24), colour).save(folder / f"{f + 1:06d}.png")
        rows = np.arange(60, dtype=np.float32)[:, None] + 100 * k
        np.save(tmp_path / "audio" / f"{video}.npy", np.repeat(rows, 128, axis=1))
    return tmp_path


def test_items_pairs_negatives_and_normalisation(frames):
    ds = GroundingDataset(["v0", "v1", "v2"], NpyFeatures(frames / "audio", "audio"), frames / "frames", seed=5)
    assert len(ds) == 30  # the first 10 frames of each video
    item = ds[13]  # video v1, frame flag 3
    assert item["audio"][:, 0].tolist() == [103.0, 103.0]
    assert item["label"].tolist() == [1, 0]
    expected = [(c / 255 - m) / s for c, m, s in zip(COLOURS[1], KINETICS_MEAN, KINETICS_STD)]
    torch.testing.assert_close(item["visual"][0, :, 100, 100], torch.tensor(expected), atol=1e-5, rtol=0)
    assert item["visual"].shape == (2, 3, 224, 224)
    seen = set()
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            video, flag = ds.negative(i)
            assert video != ds.videos[i // 10] and 0 <= flag < 10
            seen.add((video, flag))
    assert len(seen) > 15
    ds.set_epoch(0)
    assert ds.negative(7) == ds.negative(7)


def test_bn_statistics_drift_while_frozen_as_in_the_original(frames):
    """The original freezes the ResNet's weights but leaves its BN layers in train mode."""
    from grounding_gen.model import GroundingNet

    ds = GroundingDataset(["v0", "v1"], NpyFeatures(frames / "audio", "audio"), frames / "frames")
    batch = {k: v.unsqueeze(0) for k, v in ds[0].items()}
    model = GroundingNet().train()
    for p in model.visual_net.parameters():
        p.requires_grad = False
    before = model.visual_net.bn1.running_mean.clone()
    loss, _ = GroundingTask().training_loss(model, batch)
    loss.backward()
    assert not torch.equal(before, model.visual_net.bn1.running_mean)
    assert all(p.grad is None for p in model.visual_net.parameters())
    assert model.fc_gl.weight.grad is not None


def test_jet_and_overlay_colours_are_rgb():
    assert jet(np.array([0, 255])).tolist() == [[0, 0, 128], [128, 0, 0]]  # dark blue .. dark red
    weights = np.zeros(196, np.float32)
    weights[0] = 1.0  # all attention on the top-left cell
    red = np.zeros((50, 50, 3), np.uint8)
    red[..., 0] = 255
    out = overlay(red, weights)
    # 0.4 * jet + 0.6 * frame: dark red over red at the peak, dark blue over red far from it
    assert out[0, 0].tolist() == [int(0.4 * 128 + 0.6 * 255), 0, 0]
    assert out[-1, -1].tolist() == [int(0.6 * 255), 0, int(0.4 * 128)]


def test_stage1_trains_and_the_visualiser_draws(frames, tmp_path):
    from grounding_gen.main_grd_gen import main as train
    from grounding_gen.main_grd_gen_vis import main as vis

    label = tmp_path / "train.json"
    label.write_text(json.dumps([make_record(v, i, "Audio", "Counting", "Is there a voiceover?", [], "no")
                                 for i, v in enumerate(["v0", "v2"])]))
    run = tmp_path / "run"
    result = train(["--audio_dir", str(frames / "audio"), "--video_dir", str(frames / "frames"),
                    "--label_train", str(label), "--epochs", "1", "--batch-size", "10", "--num_workers", "0",
                    "--run_dir", str(run), "--quiet"])
    assert result["best_epoch"] == 1 and (run / "checkpoints/best.pt").is_file()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match="--resume"):  # refused before config.json / env.json are rewritten
        train(["--audio_dir", str(frames / "audio"), "--video_dir", str(frames / "frames"), "--seed", "5",
               "--label_train", str(label), "--epochs", "1", "--run_dir", str(run), "--quiet"])
    with pytest.raises(UserError, match=r"--lr 0\.0001 -> 0\.5"):
        train(["--audio_dir", str(frames / "audio"), "--video_dir", str(frames / "frames"), "--lr", "0.5",
               "--label_train", str(label), "--epochs", "1", "--batch-size", "10", "--run_dir", str(run),
               "--resume", "--quiet"])
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    written = vis(["--checkpoint", str(run / "checkpoints/best.pt"), "--audio_dir", str(frames / "audio"),
                   "--video_dir", str(frames / "frames"), "--videos", "v1", "--frames", "0", "9",
                   "--out_dir", str(tmp_path / "vis"), "--device", "cpu"])
    assert [p.name for p in written] == ["v1_00.png", "v1_09.png"]
    assert np.asarray(Image.open(written[0])).shape == (224, 224, 3)
