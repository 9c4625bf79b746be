"""Motion-appearance fusion and attention flattening (original: built on MCAN's ``net_utils``)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from masn.model.masked_softmax import masked_softmax
from masn.model.net_utils import MLP, LayerNorm


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None, dim: int) -> torch.Tensor:
    return F.softmax(scores, dim=dim) if mask is None else masked_softmax(scores, mask, dim)


class AttFlat(nn.Module):
    def __init__(self, hidden_size: int, flat_mlp_size: int, flat_glimpses: int, flat_out_size: int,
                 dropout_r: float = 0.1) -> None:
        super().__init__()
        self.flat_glimpses = flat_glimpses
        self.mlp = MLP(hidden_size, flat_mlp_size, flat_glimpses, dropout_r=dropout_r, use_relu=True)
        self.linear_merge = nn.Linear(hidden_size * flat_glimpses, flat_out_size)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        """x (B, S, D), x_mask (B, S) -> (B, flat_out_size)."""
        att = _masked_softmax(self.mlp(x), x_mask.unsqueeze(2), dim=1)
        pooled = [torch.sum(att[:, :, i:i + 1] * x, dim=1) for i in range(self.flat_glimpses)]
        return self.linear_merge(torch.cat(pooled, dim=1))


class FFN(nn.Module):
    def __init__(self, hidden_size: int, ff_size: int, dropout_r: float = 0.1) -> None:
        super().__init__()
        self.mlp = MLP(hidden_size, ff_size, hidden_size, dropout_r=dropout_r, use_relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class AttAdj(nn.Module):
    """Scaled dot-product attention map softmax((q Wq)(k Wk)^T / sqrt(d)), masked, then dropout."""

    def __init__(self, hidden_size: int, dropout_r: float = 0.1) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.linear_k = nn.Linear(hidden_size, hidden_size)
        self.linear_q = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout_r)

    def forward(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        k = self.linear_k(k)
        q = self.linear_q(q)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.size(-1))
        return self.dropout(_masked_softmax(scores, mask, dim=-1))


class MotionApprFusion(nn.Module):
    """Three attention graphs over U = [appearance words; motion words] (keys: appearance half,
    motion half, all), mixed by question-guided weights computed from *sum*-pooled graph outputs."""

    def __init__(self, hidden_size: int, ff_size: int, n_layer: int = 1, dropout_r: float = 0.1) -> None:
        super().__init__()
        self.n_layer = n_layer
        self.hidden_size = hidden_size
        self.appr_att_score = AttAdj(hidden_size, dropout_r)
        self.motion_att_score = AttAdj(hidden_size, dropout_r)
        self.all_att_score = AttAdj(hidden_size, dropout_r)
        self.appr_linear = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(n_layer))
        self.motion_linear = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(n_layer))
        self.all_linear = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(n_layer))
        self.appr_norm = LayerNorm(hidden_size)
        self.motion_norm = LayerNorm(hidden_size)
        self.all_norm = LayerNorm(hidden_size)
        self.ques_guide_att = AttAdj(hidden_size, dropout_r)
        self.ffn = FFN(hidden_size, ff_size, dropout_r)
        self.dropout = nn.Dropout(dropout_r)
        self.norm = LayerNorm(hidden_size)

    def forward(self, U: torch.Tensor, q_hid: torch.Tensor, U_mask: torch.Tensor,
                key_len: torch.Tensor | None = None) -> torch.Tensor:
        """U (B, 2L, D), q_hid (B, D), U_mask (B, 2L, 2L) -> (B, 2L, D).

        ``key_len`` (B,): count only the first key_len rows of each half in the pooled keys, i.e.
        give the numbers the original gets when its batch pads questions to key_len <= L words.
        """
        seq_len = U.size(1)
        half = seq_len // 2
        first_half = (torch.arange(seq_len, device=U.device) < half).to(U.dtype)
        appr_mask = U_mask * first_half
        motion_mask = U_mask * (1 - first_half)

        adjs = (self.appr_att_score(U, U, appr_mask), self.motion_att_score(U, U, motion_mask),
                self.all_att_score(U, U, U_mask))
        linears = (self.appr_linear, self.motion_linear, self.all_linear)
        norms = (self.appr_norm, self.motion_norm, self.all_norm)
        graphs = []
        for adj, linear, norm in zip(adjs, linears, norms):
            x = U
            for layer in linear:
                x = torch.matmul(adj, layer(x))
            graphs.append(norm(U + x))
        graph_out = torch.stack(graphs, dim=1)  # B, 3, 2L, D

        if key_len is None:
            fusion_k = graph_out.sum(dim=2)
        else:
            pos = torch.arange(seq_len, device=U.device) % half
            keep = (pos < key_len.unsqueeze(1)).to(U.dtype)
            fusion_k = (graph_out * keep[:, None, :, None]).sum(dim=2)
        weights = self.ques_guide_att(fusion_k, q_hid.unsqueeze(1))[:, 0]  # B, 3
        fused = (graph_out * weights[:, :, None, None]).sum(dim=1)
        return self.norm(fused + self.ffn(self.dropout(fused)))
