"""``feat_script.weights.build_loaded``: a network built from a weights file equals the ordinary build +
strict load, without computing the random initialisation the load overwrites."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from feat_script.models.resnet_stride1 import resnet18_stride1
from feat_script.weights import WeightsError, build_loaded


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(3)
    net = Net()
    with torch.no_grad():
        net.bn.running_mean.uniform_()
        net.bn.num_batches_tracked += 7
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    return path, _state(net)


def test_loaded_network_holds_the_files_tensors_and_no_initialisation_runs(saved, monkeypatch):
    path, state = saved
    calls = []
    original = nn.init.kaiming_uniform_

    def spy(tensor, *args, **kwargs):
        calls.append(tensor.device)
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(nn.init, "kaiming_uniform_", spy)
    model = build_loaded(Net, path, "net")
    assert calls and all(device.type == "meta" for device in calls)  # initialisation only ever saw meta tensors
    got = model.state_dict()
    assert set(got) == set(state)
    for key, value in state.items():
        assert torch.equal(got[key], value) and got[key].dtype == value.dtype, key
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert all(p.requires_grad for p in model.parameters())  # the module's flag, not the file's


def test_half_precision_file_gives_the_networks_own_dtype(saved, tmp_path):
    path, state = saved
    half = tmp_path / "half.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, half)
    model = build_loaded(Net, half, "net")
    assert model.fc.weight.dtype == torch.float32
    assert torch.equal(model.fc.weight, state["fc.weight"].half().float())


def test_random_init_without_a_file_is_the_ordinary_build():
    torch.manual_seed(5)
    expected = _state(Net())
    torch.manual_seed(5)
    got = build_loaded(Net, None, "net").state_dict()
    assert all(torch.equal(got[k], v) for k, v in expected.items())


def test_keys_the_file_may_miss_get_their_modules_own_random_initialisation(tmp_path):
    """ResNet-18's audio stem is not in torchvision's file: it is drawn by its own reset_parameters (seeded by
    the caller's RNG, like an ordinary build's), everything else is the file's, and nothing else is drawn."""
    torch.manual_seed(0)
    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    stems = []
    for _ in range(2):
        torch.manual_seed(9)
        model = resnet18_stride1(path)
        stems.append(model.conv1_a.weight.detach().clone())
    assert torch.equal(stems[0], stems[1])  # the seed decides it
    torch.manual_seed(9)
    expected = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False).weight  # the stem's own draw
    assert torch.equal(stems[0], expected)
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])


class Partly(nn.Module):
    """A module whose file holds one of its two parameters: no reset may overwrite the loaded one."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)


def test_a_module_filled_in_part_is_built_the_ordinary_way(tmp_path):
    from engine.modules import build_with_state

    torch.manual_seed(4)
    state = {"fc.weight": torch.randn(2, 3)}
    calls = []

    def load(model, tensors, assign):
        calls.append(assign)
        model.load_state_dict(tensors, strict=False, assign=assign)

    model = build_with_state(Partly, state, load)
    assert calls == [True, False]  # meta attempt, then the ordinary build
    assert torch.equal(model.fc.weight, state["fc.weight"]) and not model.fc.bias.is_meta


def test_torchvision_file_without_batch_counters_loads(tmp_path):
    """torchvision's older ImageNet files predate BatchNorm's num_batches_tracked."""
    torch.manual_seed(0)
    state = {k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
             if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(state, path)
    model = build_loaded(lambda: torchvision.models.resnet18(weights=None), path, "resnet18")
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_another_networks_file_is_refused(saved, tmp_path, change):
    path, state = saved
    if change == "missing":
        state.pop("fc.bias")
    elif change == "unexpected":
        state["extra.weight"] = torch.zeros(1)
    else:
        state["fc.weight"] = torch.zeros(3, 4)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(WeightsError, match="bad.pt"):
        build_loaded(Net, bad, "net")
