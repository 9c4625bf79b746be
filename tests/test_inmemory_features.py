"""The answerers' promise, for both papers: for the same video and weights, ``answerer.features(video)``
equals what the extractor CLIs write (within 1e-6 of the largest value), the answer from those files
equals the answerer's, and the one-call ``ask()`` gives the same answer (a generated video with audio;
tiny random checkpoints of tests/test_answer.py; MASN with its small sampling settings).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from benchkit.cli_features import avst_cli_features, masn_cli_features
from benchkit.tiny_checkpoints import SMALL, write_checkpoints
from feat_script.answerer import VideoFeatures, VideoFile
from feat_script.synthetic_video import Shape, make_video

pytestmark = pytest.mark.slow
TOLERANCE = 1e-6  # of the largest value: float32 rounding of the same arithmetic


def assert_close(ours: np.ndarray, ref: np.ndarray, name: str) -> None:
    assert ours.shape == ref.shape, name
    err, scale = float(np.abs(ours - ref).max()), float(np.abs(ref).max())
    assert scale > 0, f"{name}: all zero, nothing compared"
    assert err <= TOLERANCE * scale, f"{name}: max abs diff {err} (largest value {scale})"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("inmemory")
    video = make_video(d / "videos" / "1.mp4", [Shape("red", 440, 20, 40), Shape("blue", 660, 70, 25)], seconds=2)
    return {"dir": d, "video": video, **write_checkpoints(d)}


def test_avst_answerer_features_and_answer_equal_the_cli_files(media):
    from avst.answer import AvstAnswerer, ask, sampled_rows
    from feat_script.vggish import VGGish

    d = media["dir"]
    torch.manual_seed(0)
    r18, vgg = d / "r18.pth", d / "vggish.pth"
    torch.save(torchvision.models.resnet18().state_dict(), r18)
    torch.save(VGGish().state_dict(), vgg)
    ref = avst_cli_features(media["video"], d, r18, vgg, sampled_rows())
    answerer = AvstAnswerer(media["avst"], resnet_weights=r18, vggish_weights=vgg)
    ours = answerer.features(media["video"])
    assert_close(ours.arrays["audio"], ref[0], "VGGish")
    assert_close(ours.arrays["visual"], ref[1], "ResNet-18 14x14")
    question, values = "Is the <Object> in the video always playing?", ["violin"]
    from_files = VideoFeatures(ours.video, {**ours.arrays, "audio": ref[0], "visual": ref[1]})
    expected = answerer.ask(from_files, question, values)
    got = answerer.ask(media["video"], question, values)
    assert got.features == "cached" and got.answer == expected.answer
    np.testing.assert_allclose([r["prob"] for r in got.top5], [r["prob"] for r in expected.top5], atol=1e-6)
    one_call = ask(media["video"], question, values, media["avst"], resnet_weights=r18, vggish_weights=vgg)
    assert one_call.top5 == got.top5 and one_call.features == "computed"


@pytest.fixture(scope="module")
def masn_weight_files(media):
    """Random ResNet-152, I3D and Faster R-CNN weights saved as files: the route of a user with weights."""
    from feat_script.i3d import I3Res50
    from feat_script.objects import faster_rcnn

    d = media["dir"] / "masn_weights"
    d.mkdir()
    torch.manual_seed(1)
    files = {"resnet152": d / "resnet152.pth", "i3d": d / "i3d.pth", "detector": d / "detector.pth"}
    for net, path in ((torchvision.models.resnet152(), files["resnet152"]), (I3Res50(), files["i3d"]),
                      (faster_rcnn(None), files["detector"])):
        torch.save(net.state_dict(), path)
    return files


@pytest.mark.parametrize("route", ["random-init", "weight files"])
def test_masn_answerer_features_and_answer_equal_the_cli_files(media, masn_weight_files, route, monkeypatch):
    """With weight files the answerer builds ResNet-152 once for both of its streams; random weights are
    drawn per extractor, as the CLIs draw them."""
    from masn.answer import STREAMS, ExtractorWeights, FeatureSettings, MasnAnswerer, ask

    d = media["dir"] / route  # the CLIs' outputs of each route apart (a CLI skips a video already done)
    d.mkdir()
    files = masn_weight_files if route == "weight files" else dict.fromkeys(masn_weight_files)
    ref = dict(zip(STREAMS, masn_cli_features(media["video"], d, files["resnet152"], files["i3d"],
                                              files["detector"])))  # None: --random-init, seed 0
    weights = ExtractorWeights(**files, random_init=route == "random-init")
    settings = FeatureSettings(**SMALL)
    built = []
    resnet152 = torchvision.models.resnet152
    monkeypatch.setattr(torchvision.models, "resnet152", lambda **kw: built.append(1) or resnet152(**kw))
    answerer = MasnAnswerer(media["masn"], settings=settings, weights=weights)
    ours = answerer.features(VideoFile.of(media["video"]))
    assert len(built) == (2 if route == "random-init" else 1)
    for name in STREAMS:
        assert_close(ours.arrays[name], ref[name], name)
    question = "what colour is the car?"
    expected = answerer.ask(VideoFeatures(ours.video, ref), question)
    got = answerer.ask(media["video"], question)
    assert got.features == "cached" and got.answer == expected.answer
    np.testing.assert_allclose([r["prob"] for r in got.top5], [r["prob"] for r in expected.top5], atol=1e-6)
    one_call = ask(media["video"], question, media["masn"], settings=settings, weights=weights)
    assert one_call.top5 == got.top5 and one_call.features == "computed"
