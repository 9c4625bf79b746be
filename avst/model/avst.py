"""AVST (``net_grd_avst/net_avst.py::AVQA_Fusion_Net``): spatial then temporal grounding."""

from __future__ import annotations

import torch

from avst.model.fusion import FusionNetBase
from avst.model.grounding import match_logits, spatial_grounding
from avst.variants import Variant


class AVST(FusionNetBase):
    """``AVST()(audio, visual_posi, visual_nega, question) -> (out_qa, out_match_posi, out_match_nega)``.

    audio [B, T, 128], visual_posi / visual_nega [B, T, 512, 14, 14], question [B, 14] int64;
    out_qa [B, num_answers], out_match_* [B*T, 2]. The positive and negative frames share one
    batched pass through ``fc_gl`` and ``fc1..fc4``. ``visual_nega=None`` skips the negative branch
    (``out_match_nega`` is then None; ``out_qa`` never depends on it), which spares evaluation the
    negative frames. With ``return_attention=True`` a fourth output holds the positive branch's
    spatial softmax ``spatial`` [B*T, H*W] and the head-averaged temporal weights
    ``temporal_visual`` / ``temporal_audio`` [B, T].
    """

    PURE = True
    UNUSED = ("fc_a1_pure", "fc_a2_pure")
    USES_NEGATIVES = True
    MEAN_RESIDUAL = True

    def visual_sequence(self, a: torch.Tensor, visual_posi: torch.Tensor, visual_nega: torch.Tensor | None):
        b, t = a.shape[:2]
        a_flat = a.reshape(b * t, -1)
        pooled, p_posi = spatial_grounding(visual_posi.flatten(0, 1), a_flat)
        branches = 1
        if visual_nega is not None:
            pooled = torch.cat((pooled, spatial_grounding(visual_nega.flatten(0, 1), a_flat)[0]))
            branches = 2
        v = self.fc_gl(pooled)
        match = match_logits(self, torch.cat((a_flat.repeat(branches, 1), v), dim=-1))
        out_match_nega = match[b * t :] if visual_nega is not None else None
        return v[: b * t].reshape(b, t, -1), match[: b * t], out_match_nega, {"spatial": p_posi}


# registered in avst/variants.py
VARIANT = Variant("avst", AVST, epochs=80, negatives=True, grounding_init=True, spatial_attention=True,
                  description="AVST (net_grd_avst): spatial and temporal grounding, matching loss")
