"""grounding_gen/main_grd_gen.py ``--freeze_bn``: the frozen ResNet's BatchNorm statistics stay as loaded.

Without the flag the original's behaviour is kept (the original grounding_gen/main_grd_gen.py: the backbone's
weights are frozen but its BN layers stay in train mode, so their running statistics drift;
tests/test_grounding_train.py checks that); with it they must not move, while the trained head does. Checked
on the checkpoint a real one-epoch run writes.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from avst.data.annotations import make_record

pytestmark = pytest.mark.slow


def test_freeze_bn_keeps_backbone_statistics(tmp_path, monkeypatch):
    import grounding_gen.model as gmodel
    from engine.checkpoint import load_checkpoint
    from grounding_gen.main_grd_gen import main

    initial = {}

    class Recorded(gmodel.GroundingNet):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            initial.update({k: v.clone() for k, v in self.state_dict().items()})

    monkeypatch.setattr(gmodel, "GroundingNet", Recorded)
    (tmp_path / "audio").mkdir()
    rng = np.random.RandomState(0)
    for video in ("v0", "v1"):
        (tmp_path / "frames" / video).mkdir(parents=True)
        for f in range(10):
            Image.fromarray(rng.randint(0, 256, (24, 32, 3)).astype(np.uint8)).save(
                tmp_path / "frames" / video / f"{f + 1:06d}.png")
        np.save(tmp_path / "audio" / f"{video}.npy", rng.randn(60, 128).astype(np.float32))
    label = tmp_path / "train.json"
    label.write_text(json.dumps([make_record(v, i, "Audio", "Counting", "Is there a voiceover?", [], "no")
                                 for i, v in enumerate(["v0", "v1"])]))
    main(["--audio_dir", str(tmp_path / "audio"), "--video_dir", str(tmp_path / "frames"), "--label_train", str(label),
          "--epochs", "1", "--batch-size", "10", "--num_workers", "0", "--run_dir", str(tmp_path / "run"), "--quiet",
          "--device", "cpu", "--freeze_bn"])
    trained = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    stats = [k for k in initial if k.startswith("visual_net.") and ("running_" in k or "num_batches" in k)]
    assert len(stats) == 20 * 3  # 20 BatchNorm layers in the stride-1 ResNet-18
    assert [k for k in stats if not torch.equal(trained[k], initial[k])] == []
    assert all(torch.equal(trained[k], initial[k]) for k in initial if k.startswith("visual_net.") and k not in stats)
    assert not torch.equal(trained["fc_gl.weight"], initial["fc_gl.weight"])
