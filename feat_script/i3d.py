"""I3D ResNet-50 (Kinetics-400), MASN's motion backbone, in the layout of Tushar-N/pytorch-resnet3d.

Module names, shapes and registration order follow that repository's ``I3Res50`` (the Caffe2
``video-nonlocal-net`` I3D baseline ported to PyTorch), so its released ``i3d_r50_kinetics.pth``
loads strictly. The released file has no ``num_batches_tracked`` entries; BatchNorm fills them in.

Geometry: conv1 and both max-pools halve time, so a clip of T frames at 224x224 gives a
``[2048, T/8, 7, 7]`` layer4 map (MASN's "hw7"). Input frames are RGB in [0, 255] normalised with
mean 114.75 and std 57.375 (``I3D_MEAN``/``I3D_STD``), as in the upstream evaluation code.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from feat_script.weights import WEIGHTS, build_loaded

I3D_MEAN = 114.75
I3D_STD = 57.375


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block (keys/values max-pooled 2x2 in space), residual, BN after."""

    def __init__(self, dim: int, dim_inner: int) -> None:
        super().__init__()
        self.dim_inner = dim_inner
        self.theta = nn.Conv3d(dim, dim_inner, kernel_size=1)
        self.maxpool = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.phi = nn.Conv3d(dim, dim_inner, kernel_size=1)
        self.g = nn.Conv3d(dim, dim_inner, kernel_size=1)
        self.out = nn.Conv3d(dim_inner, dim, kernel_size=1)
        self.bn = nn.BatchNorm3d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.maxpool(x)
        theta = self.theta(x)
        phi = self.phi(pooled).flatten(2)
        g = self.g(pooled).flatten(2)
        attention = torch.softmax(theta.flatten(2).transpose(1, 2) @ phi * self.dim_inner ** -0.5, dim=-1)
        t = (g @ attention.transpose(1, 2)).view(theta.shape)
        return self.bn(self.out(t)) + x


class Bottleneck(nn.Module):
    """ResNet bottleneck whose first conv is temporal (3x1x1) when ``temp_conv`` is set."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None,
                 temp_conv: int, temp_stride: int, use_nl: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, kernel_size=(1 + 2 * temp_conv, 1, 1),
                               stride=(temp_stride, 1, 1), padding=(temp_conv, 0, 0), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=(1, 3, 3), stride=(1, stride, stride),
                               padding=(0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.nl = NonLocalBlock(planes * 4, planes * 2) if use_nl else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(out + shortcut)
        return out if self.nl is None else self.nl(out)


def _layer(inplanes: int, planes: int, stride: int, temp_conv: list[int], nonlocal_every: int = 0) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes * Bottleneck.expansion:
        downsample = nn.Sequential(
            nn.Conv3d(inplanes, planes * 4, kernel_size=1, stride=(1, stride, stride), bias=False),
            nn.BatchNorm3d(planes * 4),
        )
    blocks = [Bottleneck(inplanes, planes, stride, downsample, temp_conv[0], 1)]
    for i, t in enumerate(temp_conv[1:], start=1):
        use_nl = nonlocal_every > 0 and i % nonlocal_every == nonlocal_every - 1
        blocks.append(Bottleneck(planes * 4, planes, 1, None, t, 1, use_nl))
    return nn.Sequential(*blocks)


class I3Res50(nn.Module):
    """I3D ResNet-50: ``features`` gives the layer4 map, ``forward`` the logits.

    ``nonlocal_blocks=True`` is upstream's ``i3_res50_nl``: a non-local block after every second
    bottleneck of layer2 and layer3 (blocks 1, 3, 5).
    """

    def __init__(self, num_classes: int = 400, nonlocal_blocks: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, kernel_size=(5, 7, 7), stride=(2, 2, 2), padding=(2, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool1 = nn.MaxPool3d(kernel_size=(2, 3, 3), stride=(2, 2, 2))
        self.maxpool2 = nn.MaxPool3d(kernel_size=(2, 1, 1), stride=(2, 1, 1))
        self.layer1 = _layer(64, 64, 1, [1, 1, 1])
        every = 2 if nonlocal_blocks else 0
        self.layer2 = _layer(256, 128, 2, [1, 0, 1, 0], every)
        self.layer3 = _layer(512, 256, 2, [1, 0, 1, 0, 1, 0], every)
        self.layer4 = _layer(1024, 512, 2, [0, 1, 0])
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(2048, num_classes)
        self.drop = nn.Dropout(0.5)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] normalised clips -> [B, 2048, T/8, H/32, W/32] (7x7 for 224x224)."""
        x = self.maxpool1(self.relu(self.bn1(self.conv1(clips))))
        x = self.maxpool2(self.layer1(x))
        return self.layer4(self.layer3(self.layer2(x)))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.avgpool(self.features(clips)))
        return self.fc(x.flatten(1))


def i3d_input(frames_uint8: torch.Tensor) -> torch.Tensor:
    """[..., 3, T, H, W] RGB bytes -> float input of ``I3Res50``."""
    return (frames_uint8.float() - I3D_MEAN) / I3D_STD


def i3d_r50(weights: str | Path | None = None, num_classes: int = 400, nonlocal_blocks: bool = False) -> I3Res50:
    """Build the network in eval mode; ``weights`` is ``i3d_r50_kinetics.pth`` or, with
    ``nonlocal_blocks``, ``i3d_r50_nl_kinetics.pth`` (None: random init)."""
    return build_loaded(lambda: I3Res50(num_classes=num_classes, nonlocal_blocks=nonlocal_blocks), weights,
                        "i3d_r50", WEIGHTS["i3d_r50"].source).eval()
