"""The README's promise: scripts/answer.py's in-memory AVST features equal what the extractor CLIs write
for the same video and weights (random weights, saved to files both routes load; a generated video
with audio). The MASN half (ResNet-152, I3D, Faster R-CNN) is too slow for the suite:
``scripts/bench_answer.py --model masn`` checks it with the same helpers.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from answering import StageTimer
from feat_script.cli_features import avst_cli_features, max_abs_diff
from feat_script.synthetic_video import Shape, make_video

pytestmark = pytest.mark.slow


def test_avst_in_memory_features_equal_the_cli_files(tmp_path):
    from avst.answer import sampled_rows, video_features
    from feat_script.vggish import VGGish

    torch.manual_seed(0)
    r18, vgg = tmp_path / "r18.pth", tmp_path / "vggish.pth"
    torch.save(torchvision.models.resnet18().state_dict(), r18)
    torch.save(VGGish().state_dict(), vgg)
    video = make_video(tmp_path / "videos" / "1.mp4", [Shape("red", 440, 20, 40), Shape("blue", 660, 70, 25)],
                       seconds=2)
    ref = avst_cli_features(video, tmp_path, r18, vgg, sampled_rows())
    audio, visual, _ = video_features(video, resnet_weights=r18, vggish_weights=vgg, random_init=False,
                                      device=torch.device("cpu"), amp="off", timer=StageTimer())
    for ours, theirs in ((audio[0].numpy(), ref[0]), (visual[0].numpy(), ref[1])):
        assert ours.shape == theirs.shape
        err, scale, ok = max_abs_diff(ours, theirs)
        assert ok, f"max abs diff {err} (largest value {scale})"
    assert np.abs(ref[1]).max() > 0 and np.abs(ref[0]).max() > 0
