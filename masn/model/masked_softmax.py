"""The masked softmax of MASN's attention maps (GCN adjacency, BAN, fusion graphs, AttFlat).

The original subtracts 1e10 where the mask is 0, takes the softmax, multiplies by the mask and
turns NaN into 0. With finite scores that NaN never arises in fp32, and the result is exactly
the softmax over the unmasked entries (masked ones contribute exp(-1e10) = 0), with rows that
have no unmasked entry all zero. In half precision 1e10 overflows and the NaN -> 0 step hid real
overflows: a row with an infinite score became zeros and the NaN guard never saw it. Here masked
entries are set to the dtype's lowest finite value before the softmax (exp gives 0 as well; an
empty row stays finite, so no NaN arises even in backward) and to 0 after it, and a non-finite
unmasked score stays NaN. The fp32 numbers are unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int, scale: float | None = None) -> torch.Tensor:
    """softmax(scale * scores) along ``dim`` over the entries where ``mask`` (0/1, broadcastable) is
    nonzero; masked entries and rows without any unmasked entry are 0. Computed in the promoted dtype of
    ``scores`` and ``mask``, as the original's ``scores - 1e10 * (1 - mask)`` does (fp32 under autocast)."""
    masked_out = mask == 0
    logits = scores.to(torch.promote_types(scores.dtype, mask.dtype))
    if scale is not None:
        logits = logits * scale
    logits = logits.masked_fill(masked_out, torch.finfo(logits.dtype).min)
    return F.softmax(logits, dim=dim).masked_fill(masked_out, 0.0)
