"""Stage-1 audio-visual grounding net (``grounding_gen/nets_grd_gen.py::AVQA_AVatt_Grounding``).

Frames go through the stride-1 ResNet-18, the audio through ``fc_a1``/``fc_a2``, and each
(frame, audio) pair through AVST's spatial grounding and matching head, whose weights stage 2
takes over (``avst.model.init_from_grounding``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avst.model.grounding import add_match_head, match_logits, spatial_grounding
from feat_script.models.resnet_stride1 import resnet18_stride1


class GroundingNet(nn.Module):
    """``GroundingNet()(audio, visual)`` or ``(video_id, audio, visual)`` -> logits [B*T, 2].

    audio [B, T, 128], visual [B, T, 3, 224, 224] (T = 2 in the original: positive, negative);
    rows come out (sample0-pos, sample0-neg, sample1-pos, ...). ``return_map=True`` gives
    ``(p [B*T, 1, H*W], logits)`` as the original ``_vis`` net does. ``visual_weights`` is an
    optional ImageNet ResNet-18 file for ``visual_net`` (nothing is loaded by default).
    """

    def __init__(self, visual_weights: str | Path | None = None) -> None:
        super().__init__()
        self.fc_a1 = nn.Linear(128, 512)
        self.fc_a2 = nn.Linear(512, 512)
        self.visual_net = resnet18_stride1(visual_weights)
        add_match_head(self)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc_gl = nn.Linear(1024, 512)
        self.tanh = nn.Tanh()

    def forward(self, *inputs, return_map: bool = False):
        if len(inputs) == 3:
            inputs = inputs[1:]  # the original's unused video_id
        if len(inputs) != 2:
            raise TypeError("GroundingNet expects (audio, visual) or (video_id, audio, visual)")
        audio, visual = inputs
        if audio.dim() != 3 or audio.shape[-1] != 128:
            raise ValueError(f"audio must be [B, T, 128] VGGish features, got {list(audio.shape)}")
        if visual.dim() != 5 or tuple(visual.shape[:3]) != (*audio.shape[:2], 3):
            raise ValueError(
                f"visual must be [B, T, 3, H, W] frames with B, T as audio, got {list(visual.shape)}"
            )
        a = self.fc_a2(F.relu(self.fc_a1(audio))).flatten(0, 1)
        maps = self.visual_net(visual.flatten(0, 1))
        pooled, p = spatial_grounding(maps, a)
        logits = match_logits(self, torch.cat((a, self.fc_gl(pooled)), dim=-1))
        if return_map:
            return p.unsqueeze(1), logits
        return logits
