"""The module set and the pieces AVST and its baseline share (the original ``AVQA_Fusion_Net``).

Both originals register the same modules in the same order (AVST adds ``fc_a1_pure`` and
``fc_a2_pure`` after ``fc_a2``); the unused ones (``fc_v``, ``fc_st``, ``fc``, ``fc_aq``,
``fc_vq``, ``norm3``, ``dropout``, ``relu1..4``, ``visual_net``) are kept so that the authors'
checkpoints load strictly, and frozen (``engine.modules.freeze_unused``) so that DDP needs no
unused-parameter search: no gradient ever reached them in the original either.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avst.model.grounding import add_match_head
from avst.model.question_encoder import QstEncoder
from engine.modules import freeze_unused
from feat_script.models.resnet_stride1 import resnet18_stride1

NUM_WORDS = 93
NUM_ANSWERS = 42
# Modules neither forward calls (65 % of AVST's parameters, 69 % of the baseline's).
UNUSED = ("visual_net", "fc_v", "fc_st", "fc", "fc_aq", "fc_vq", "norm3")


class FusionNetBase(nn.Module):
    """The original's modules and forward: question and audio encoders, a visual sequence [B, T, 512]
    (the subclass's :meth:`visual_sequence`), temporal attention, answer. A subclass sets ``PURE`` (AVST's
    dead ``fc_a*_pure`` copies), ``UNUSED`` (the modules its forward does not call, beyond :data:`UNUSED`),
    ``USES_NEGATIVES`` (whether ``visual_nega`` is read) and ``MEAN_RESIDUAL`` (see :meth:`answer`)."""

    PURE: bool
    UNUSED: tuple[str, ...]
    USES_NEGATIVES: bool
    MEAN_RESIDUAL: bool

    def __init__(
        self,
        vocab_size: int = NUM_WORDS,
        num_answers: int = NUM_ANSWERS,
        visual_weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.fc_a1 = nn.Linear(128, 512)
        self.fc_a2 = nn.Linear(512, 512)
        if self.PURE:
            self.fc_a1_pure = nn.Linear(128, 512)
            self.fc_a2_pure = nn.Linear(512, 512)
        self.visual_net = resnet18_stride1(visual_weights)

        self.fc_v = nn.Linear(2048, 512)
        self.fc_st = nn.Linear(512, 512)
        self.fc_fusion = nn.Linear(1024, 512)
        self.fc = nn.Linear(1024, 512)
        self.fc_aq = nn.Linear(512, 512)
        self.fc_vq = nn.Linear(512, 512)

        self.linear11 = nn.Linear(512, 512)
        self.dropout1 = nn.Dropout(0.1)
        self.linear12 = nn.Linear(512, 512)

        self.linear21 = nn.Linear(512, 512)
        self.dropout2 = nn.Dropout(0.1)
        self.linear22 = nn.Linear(512, 512)
        self.norm1 = nn.LayerNorm(512)
        self.norm2 = nn.LayerNorm(512)
        self.dropout3 = nn.Dropout(0.1)
        self.dropout4 = nn.Dropout(0.1)
        self.norm3 = nn.LayerNorm(512)

        self.attn_a = nn.MultiheadAttention(512, 4, dropout=0.1)
        self.attn_v = nn.MultiheadAttention(512, 4, dropout=0.1)

        self.question_encoder = QstEncoder(vocab_size, 512, 512, 1, 512)

        self.tanh = nn.Tanh()
        self.dropout = nn.Dropout(0.5)
        self.fc_ans = nn.Linear(512, num_answers)

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc_gl = nn.Linear(1024, 512)

        add_match_head(self)
        freeze_unused(self, UNUSED + self.UNUSED)

    def forward(
        self,
        audio: torch.Tensor,
        visual_posi: torch.Tensor,
        visual_nega: torch.Tensor | None,
        question: torch.Tensor,
        return_attention: bool = False,
    ):
        """-> (out_qa, out_match_posi, out_match_nega[, attention]); see the subclass."""
        check_inputs(audio, visual_posi, visual_nega if self.USES_NEGATIVES else None, question)
        q = self.question_encoder(question)
        a = self.encode_audio(audio)
        visual, out_match_posi, out_match_nega, attention = self.visual_sequence(a, visual_posi, visual_nega)
        out_qa, w_v, w_a = self.answer(q, a, visual, residual=self.MEAN_RESIDUAL)
        if return_attention:
            return out_qa, out_match_posi, out_match_nega, {**attention, "temporal_visual": w_v, "temporal_audio": w_a}
        return out_qa, out_match_posi, out_match_nega

    def visual_sequence(
        self, a: torch.Tensor, visual_posi: torch.Tensor, visual_nega: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, dict[str, torch.Tensor]]:
        """(visual [B, T, 512], out_match_posi, out_match_nega, extra attention maps) from the encoded audio
        a [B, T, 512] and the feature maps."""
        raise NotImplementedError

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """[..., 128] VGGish -> [..., 512]; no activation after ``fc_a2``."""
        return self.fc_a2(F.relu(self.fc_a1(audio)))

    def attend_visual(self, xq: torch.Tensor, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Question-queried attention over time, then the FFN block (residual around the FFN only)."""
        out, weights = self.attn_v(xq, seq, seq, attn_mask=None, key_padding_mask=None)
        out = out.squeeze(0)
        out = out + self.dropout2(self.linear12(self.dropout1(F.relu(self.linear11(out)))))
        return self.norm1(out), weights.squeeze(1)

    def attend_audio(self, xq: torch.Tensor, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As ``attend_visual`` with ``attn_a``, ``linear21/22``, ``dropout3/4`` and ``norm2``."""
        out, weights = self.attn_a(xq, seq, seq, attn_mask=None, key_padding_mask=None)
        out = out.squeeze(0)
        out = out + self.dropout4(self.linear22(self.dropout3(F.relu(self.linear21(out)))))
        return self.norm2(out), weights.squeeze(1)

    def answer(self, q: torch.Tensor, audio: torch.Tensor, visual: torch.Tensor, residual: bool):
        """Question-queried attention over time on audio and visual [B, T, 512], then
        fc_fusion(tanh([audio | visual])) gated by the question -> (answer logits, visual weights, audio
        weights). ``residual`` adds each sequence's mean over time to its attended vector (AVST only)."""
        xq = q.unsqueeze(0)
        o_v, w_v = self.attend_visual(xq, visual.transpose(0, 1))
        o_a, w_a = self.attend_audio(xq, audio.transpose(0, 1))
        if residual:
            o_a, o_v = o_a + audio.mean(dim=1), o_v + visual.mean(dim=1)
        fused = torch.cat((o_a, o_v), dim=-1)
        return self.fc_ans(self.tanh(self.fc_fusion(self.tanh(fused)) * q)), w_v, w_a


def check_inputs(
    audio: torch.Tensor, visual_posi: torch.Tensor, visual_nega: torch.Tensor | None, question: torch.Tensor
) -> None:
    """One clear error for inputs the model cannot take (the original fails deep inside)."""
    if audio.dim() != 3 or audio.shape[-1] != 128:
        raise ValueError(f"audio must be [B, T, 128] VGGish features, got {list(audio.shape)}")
    b, t = audio.shape[:2]
    if visual_posi.dim() != 5 or tuple(visual_posi.shape[:3]) != (b, t, 512):
        raise ValueError(
            f"visual_posi must be [B, T, 512, H, W] with B, T = {b}, {t} as audio, "
            f"got {list(visual_posi.shape)}"
        )
    if visual_nega is not None and visual_nega.shape != visual_posi.shape:
        raise ValueError(
            f"visual_nega must have visual_posi's shape {list(visual_posi.shape)}, "
            f"got {list(visual_nega.shape)}"
        )
    if question.dim() != 2 or question.shape[0] != b or question.is_floating_point():
        raise ValueError(
            f"question must be [B, L] integer token ids with B = {b}, got {list(question.shape)}"
        )
