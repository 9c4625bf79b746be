"""ResNet-18 with a stride-1 ``layer4``, AVST's ``visual_net``.

A 224x224 frame gives a [512, 14, 14] map instead of torchvision's [512, 7, 7]. The module
tree and registration order follow the original ``visual_net.py`` (an extra audio stem
``conv1_a`` registered first, ``avgpool`` and ``fc`` kept but unused) so that the authors'
checkpoints load strictly and their 123 state_dict entries come out in the same order.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

from feat_script.weights import build_loaded


def _layer(inplanes: int, planes: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
    return nn.Sequential(BasicBlock(inplanes, planes, stride, downsample), BasicBlock(planes, planes))


class ResNet18Stride1(nn.Module):
    """ResNet-18 returning the layer4 map (after its final ReLU, so non-negative)."""

    def __init__(self, modal: str = "vision", num_classes: int = 1000) -> None:
        super().__init__()
        self.modal = modal
        self.conv1_a = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _layer(64, 64, 1)
        self.layer2 = _layer(64, 128, 2)
        self.layer3 = _layer(128, 256, 2)
        self.layer4 = _layer(256, 512, 1)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1_a(x) if self.modal == "audio" else self.conv1(x)
        x = self.maxpool(self.relu(self.bn1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet18_stride1(weights: str | Path | None = None, modal: str = "vision") -> ResNet18Stride1:
    """Build the network; ``weights`` is torchvision's ImageNet ``resnet18-*.pth`` (or ours).

    As in the original, the ImageNet file is loaded non-strictly: only ``conv1_a`` may be
    missing (it stays random). Any other missing or unexpected key is an error.
    """
    return build_loaded(lambda: ResNet18Stride1(modal=modal), weights, "ResNet-18",
                        "Get torchvision's ImageNet file resnet18-5c106cde.pth (or resnet18-f37072fd.pth) and pass "
                        "its path.", may_miss={"conv1_a.weight"})
