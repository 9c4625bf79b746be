"""Audio-guided spatial grounding and the audio-visual matching head (original ``net_grd_avst/net_avst.py``,
``AVQA_Fusion_Net.forward``).

Shared by AVST and the stage-1 grounding net. The original materialises the L2-normalised
region tensor [N, 196, 512] and average-pools separately; here the normalisation is folded into
the two matrix-vector products (a cosine is a dot product divided by the region norm), and the
average pool rides along as a second row of the second product. Same arithmetic up to float
rounding, fewer passes over the maps, and no new [N, 196, 512] tensor made or kept for backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORM_EPS = 1e-12  # F.normalize's default, as in the original


def spatial_grounding(visual: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """visual [N, C, H, W] feature maps, audio [N, C] -> (tanh([mean | attended]) [N, 2C], p [N, H*W]).

    p is the softmax over positions (index h*W + w) of the cosine between each region vector
    and the audio vector; "attended" is the p-weighted sum of the *normalised* region vectors
    and "mean" the plain average of the raw map, as in the original.
    """
    n, c = visual.shape[:2]
    regions = visual.reshape(n, c, -1)
    inv_norm = torch.linalg.vector_norm(regions, dim=1).clamp_min(NORM_EPS).reciprocal()
    audio_unit = F.normalize(audio, dim=1)
    cosine = torch.bmm(audio_unit.unsqueeze(1), regions).squeeze(1) * inv_norm
    p = F.softmax(cosine, dim=-1)
    mean_weight = torch.full_like(p, 1.0 / p.shape[1])
    pooled = torch.bmm(torch.stack((mean_weight, p * inv_norm), dim=1), regions.transpose(1, 2))
    return torch.tanh(pooled.reshape(n, 2 * c)), p


def add_match_head(net: nn.Module) -> None:
    """Registers the matching head on ``net`` in the originals' order: ``fc1, relu1, ..., fc4, relu4``
    (the ``relu*`` modules are registered but unused, as in the originals: their forward calls F.relu)."""
    for i, (width_in, width_out) in enumerate(((1024, 512), (512, 256), (256, 128), (128, 2)), start=1):
        net.add_module(f"fc{i}", nn.Linear(width_in, width_out))
        net.add_module(f"relu{i}", nn.ReLU())


def match_logits(net: nn.Module, feat: torch.Tensor) -> torch.Tensor:
    """ReLU(fc1) -> ReLU(fc2) -> ReLU(fc3) -> fc4 of ``net`` (:func:`add_match_head`): [N, 1024] -> [N, 2]
    (class 1 = matched)."""
    return net.fc4(F.relu(net.fc3(F.relu(net.fc2(F.relu(net.fc1(feat)))))))


def organize_match(
    out_match_posi: torch.Tensor, out_match_nega: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The original ``batch_organize``: rows interleaved (posi_0, nega_0, posi_1, ...), labels 1, 0, ...

    Returns (logits [2N, 2], labels [2N] int64) on the inputs' device.
    """
    logits = torch.stack((out_match_posi, out_match_nega), dim=1).reshape(-1, out_match_posi.shape[-1])
    return logits, match_labels(out_match_posi.shape[0], logits.device)


def match_labels(n: int, device: torch.device) -> torch.Tensor:
    """1, 0, 1, 0, ... (2n int64), made on ``device`` (no host-to-device copy per step)."""
    return 1 - torch.arange(2 * n, device=device) % 2
