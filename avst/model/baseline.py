"""The baseline (``net_grd_baseline/nets_qa_grd_baseline.py``): temporal attention over pooled maps.

No spatial grounding, no matching head, no mean-over-time residual; same module set as AVST
minus the ``*_pure`` copies.
"""

from __future__ import annotations

import torch

from avst.model.fusion import FusionNetBase, check_inputs


class AVSTBaseline(FusionNetBase):
    """``AVSTBaseline()(audio, visual_posi, visual_nega, question) -> (out_qa, None, None)``.

    ``visual_nega`` is accepted and ignored (``None`` is fine). With ``return_attention=True``
    a fourth output holds the temporal weights ``temporal_visual`` / ``temporal_audio`` [B, T].
    """

    PURE = False
    UNUSED = ("fc_gl", "fc1", "fc2", "fc3", "fc4")

    def forward(
        self,
        audio: torch.Tensor,
        visual_posi: torch.Tensor,
        visual_nega: torch.Tensor | None,
        question: torch.Tensor,
        return_attention: bool = False,
    ):
        check_inputs(audio, visual_posi, None, question)
        q = self.question_encoder(question)
        a = self.encode_audio(audio)
        b, t = audio.shape[:2]
        visual = self.avgpool(visual_posi.flatten(0, 1)).reshape(b, t, -1)
        out_qa, w_v, w_a = self.answer(q, a, visual, residual=False)
        if return_attention:
            return out_qa, None, None, {"temporal_visual": w_v, "temporal_audio": w_a}
        return out_qa, None, None
