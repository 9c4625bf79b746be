"""The stage-1 grounding net: layout, a reference vector computed with the original's code, call forms, the map,
B*T = 1."""

from __future__ import annotations

import pytest
import torch
from avst_spec_vector import fill_spec_weights, normals

from avst.model import AVST, load_avst_state
from grounding_gen.model import GroundingNet


def test_state_dict_layout_matches_the_original():
    model = GroundingNet()
    keys = list(model.state_dict())
    assert len(keys) == 137
    assert sum(p.numel() for p in model.parameters()) == 13_235_434
    assert list(dict.fromkeys(k.split(".")[0] for k in keys)) == [
        "fc_a1", "fc_a2", "visual_net", "fc1", "fc2", "fc3", "fc4", "fc_gl",
    ]  # fmt: skip
    assert set(keys) <= set(AVST().state_dict())


def test_spec_test_vector():
    model = fill_spec_weights(GroundingNet())
    audio, frames = normals(2000, (2, 2, 128)), normals(2001, (2, 2, 3, 224, 224))
    with torch.no_grad():
        logits = model(audio, frames)
        with_id, (p, mapped) = model(["v1", "v2"], audio, frames), model(audio, frames, return_map=True)
    expected = [[-0.17767, 0.50367], [0.00126, 0.26251], [-0.11368, 0.46288], [-0.04070, 0.44144]]
    torch.testing.assert_close(logits, torch.tensor(expected), atol=1e-5, rtol=0)
    torch.testing.assert_close(with_id, logits, atol=0, rtol=0)
    torch.testing.assert_close(mapped, logits, atol=0, rtol=0)
    assert p.shape == (4, 1, 196)
    torch.testing.assert_close(p.sum(-1), torch.ones(4, 1))


def test_single_pair_gives_the_numbers_of_a_bigger_batch():
    torch.manual_seed(0)
    model = GroundingNet().eval()
    g = torch.Generator().manual_seed(1)
    audio, frames = torch.randn(3, 1, 128, generator=g), torch.randn(3, 1, 3, 64, 64, generator=g)
    with torch.no_grad():
        full = model(audio, frames)
        for i in range(3):
            torch.testing.assert_close(
                model(audio[i : i + 1], frames[i : i + 1]), full[i : i + 1], atol=1e-6, rtol=0
            )


def test_bad_calls_are_named():
    model = GroundingNet()
    audio = torch.zeros(1, 2, 128)
    with pytest.raises(ValueError, match="visual must be"):
        model(audio, torch.zeros(1, 2, 512, 14, 14))
    with pytest.raises(ValueError, match="audio must be"):
        model(torch.zeros(2, 128), torch.zeros(1, 2, 3, 32, 32))
    with pytest.raises(TypeError, match="GroundingNet expects"):
        model(audio)


def test_authors_grounding_checkpoint_loads_strictly(authors_grounding_checkpoint):
    source, path = authors_grounding_checkpoint
    model = GroundingNet()
    load_avst_state(model, path)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    with pytest.raises(ValueError, match="main_grounding_gen_best.pt does not fit AVST: missing"):
        load_avst_state(AVST(), path)


def test_imagenet_weights_come_from_a_local_file_only(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(4)
    imagenet = resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18-5c106cde.pth"
    torch.save(imagenet, path)
    model = GroundingNet(visual_weights=path)
    for key in ("conv1.weight", "layer4.0.downsample.0.weight", "layer4.1.bn2.running_var", "fc.bias"):
        assert torch.equal(model.visual_net.state_dict()[key], imagenet[key]), key
    assert torch.equal(AVST(visual_weights=path).visual_net.state_dict()["layer3.1.conv2.weight"],
                       imagenet["layer3.1.conv2.weight"])  # fmt: skip
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        GroundingNet(visual_weights=tmp_path / "missing.pth")
