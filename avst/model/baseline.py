"""The baseline (``net_grd_baseline/nets_qa_grd_baseline.py``): temporal attention over pooled maps.

No spatial grounding, no matching head, no mean-over-time residual; same module set as AVST
minus the ``*_pure`` copies.
"""

from __future__ import annotations

import torch

from avst.model.fusion import FusionNetBase
from avst.variants import Variant


class AVSTBaseline(FusionNetBase):
    """``AVSTBaseline()(audio, visual_posi, visual_nega, question) -> (out_qa, None, None)``.

    ``visual_nega`` is accepted and ignored (``None`` is fine). With ``return_attention=True``
    a fourth output holds the temporal weights ``temporal_visual`` / ``temporal_audio`` [B, T].
    """

    PURE = False
    UNUSED = ("fc_gl", "fc1", "fc2", "fc3", "fc4")
    USES_NEGATIVES = False
    MEAN_RESIDUAL = False

    def visual_sequence(self, a: torch.Tensor, visual_posi: torch.Tensor, visual_nega: torch.Tensor | None):
        b, t = a.shape[:2]
        return self.avgpool(visual_posi.flatten(0, 1)).reshape(b, t, -1), None, None, {}


# registered in avst/variants.py
VARIANT = Variant("baseline", AVSTBaseline, epochs=20, negatives=False, grounding_init=False,
                  spatial_attention=False, description="the AV+Q+TG baseline (net_grd_baseline)")
