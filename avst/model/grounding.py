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


def match_logits(fcs: tuple[nn.Linear, nn.Linear, nn.Linear, nn.Linear], feat: torch.Tensor) -> torch.Tensor:
    """ReLU(fc1) -> ReLU(fc2) -> ReLU(fc3) -> fc4: [N, 1024] -> [N, 2] (class 1 = matched)."""
    fc1, fc2, fc3, fc4 = fcs
    return fc4(F.relu(fc3(F.relu(fc2(F.relu(fc1(feat)))))))


def organize_match(
    out_match_posi: torch.Tensor, out_match_nega: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The original ``batch_organize``: rows interleaved (posi_0, nega_0, posi_1, ...), labels 1, 0, ...

    Returns (logits [2N, 2], labels [2N] int64) on the inputs' device.
    """
    logits = torch.stack((out_match_posi, out_match_nega), dim=1).reshape(-1, out_match_posi.shape[-1])
    labels = torch.tensor([1, 0], device=logits.device).repeat(out_match_posi.shape[0])
    return logits, labels
