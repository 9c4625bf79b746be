"""Bilinear attention network (original: ban-vqa's ``BCNet`` / ``BiAttention`` / ``BAN``).

Questions carry a candidate axis: v is (B, M, D) and q is (B, C, L, D), where C is 1 for open
questions and 5 for Action/Trans. Everything computed from v alone (the ``v_net`` projections)
runs once per video instead of once per candidate; for C = 1 the arithmetic is the original's.
"""
from __future__ import annotations

import torch
from torch import nn

from masn.model.fc import FCNet
from masn.model.masked_softmax import masked_softmax


class BCNet(nn.Module):
    """Low-rank bilinear map. With ``h_out`` it holds ``h_mat`` under the weight-norm names of
    ``weight_norm(BCNet, name='h_mat', dim=None)`` (``h_mat_g`` scalar, ``h_mat_v``)."""

    def __init__(self, v_dim: int, q_dim: int, h_dim: int, h_out: int | None, act: str = "ReLU",
                 dropout: tuple[float, float] = (0.2, 0.5), k: int = 3) -> None:
        super().__init__()
        self.h_out = h_out
        self.v_net = FCNet([v_dim, h_dim * k], act=act, dropout=dropout[0])
        self.q_net = FCNet([q_dim, h_dim * k], act=act, dropout=dropout[0])
        self.dropout = nn.Dropout(dropout[1])
        if h_out is not None:
            h_mat = torch.empty(1, h_out, 1, h_dim * k).normal_()
            self.h_bias = nn.Parameter(torch.empty(1, h_out, 1, 1).normal_())
            self.h_mat_g = nn.Parameter(h_mat.norm())
            self.h_mat_v = nn.Parameter(h_mat)

    @property
    def h_mat(self) -> torch.Tensor:
        return self.h_mat_v * (self.h_mat_g / self.h_mat_v.norm())

    def logits(self, v_: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """v_ = v_net(v) (B, M, K), q (B, C, L, D) -> (B, C, h_out, M, L)."""
        q_ = self.q_net(q)
        b, c, n_q, k = q_.shape
        n_v = v_.size(1)
        # h_mat scales the (few) word rows rather than the (many) object rows: same sum, less traffic.
        hq = q_.unsqueeze(2) * self.h_mat.view(1, 1, self.h_out, 1, k)
        logits = torch.bmm(self.dropout(v_), hq.reshape(b, c * self.h_out * n_q, k).transpose(1, 2))
        logits = logits.view(b, n_v, c, self.h_out, n_q).permute(0, 2, 3, 1, 4)
        return logits + self.h_bias.view(1, 1, self.h_out, 1, 1)

    def forward_with_weights(self, v_: torch.Tensor, q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """sum_ij v_[b,i,k] w[b,c,i,j] q_net(q)[b,c,j,k] with v_ = v_net(v) -> (B, C, K)."""
        q_ = self.q_net(q)
        wv = torch.matmul(w.transpose(2, 3), v_.unsqueeze(1))
        return (wv * q_).sum(2)


class BiAttention(nn.Module):
    def __init__(self, x_dim: int, y_dim: int, z_dim: int, glimpse: int,
                 dropout: tuple[float, float] = (0.2, 0.5)) -> None:
        super().__init__()
        self.glimpse = glimpse
        self.logits = BCNet(x_dim, y_dim, z_dim, glimpse, dropout=dropout, k=3)

    def forward(self, v: torch.Tensor, q: torch.Tensor, v_mask: torch.Tensor,
                q_mask: torch.Tensor) -> torch.Tensor:
        """Softmax jointly over (object, word) per glimpse; masked entries 0. -> (B, C, glimpse, M, L)."""
        logits = self.logits.logits(self.logits.v_net(v), q)
        b, c, g, n_v, n_q = logits.shape
        mask = (v_mask[:, None, :, None] * q_mask[:, :, None, :]).view(b, c, 1, n_v * n_q)
        return masked_softmax(logits.reshape(b, c, g, n_v * n_q), mask, dim=3).view(b, c, g, n_v, n_q)


class BAN(nn.Module):
    """Attention computed once from the initial question; each glimpse adds q_prj(b_g) to every word."""

    def __init__(self, num_hid: int, glimpse: int) -> None:
        super().__init__()
        self.glimpse = glimpse
        self.v_att = BiAttention(num_hid, num_hid, num_hid, glimpse)
        b_net, q_prj = [], []
        for _ in range(glimpse):  # interleaved like the original, so a seed gives its initial weights
            b_net.append(BCNet(num_hid, num_hid, num_hid, None, k=1))
            q_prj.append(FCNet([num_hid, num_hid], "", 0.2))
        self.b_net = nn.ModuleList(b_net)
        self.q_prj = nn.ModuleList(q_prj)

    def forward(self, v: torch.Tensor, q: torch.Tensor, v_mask: torch.Tensor,
                q_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """v (B, M, D), q (B, C, L, D), masks (B, M), (B, C, L) -> q (B, C, L, D), att (B, C, g, M, L)."""
        att = self.v_att(v, q, v_mask, q_mask)
        for g in range(self.glimpse):
            b = self.b_net[g].forward_with_weights(self.b_net[g].v_net(v), q, att[:, :, g])
            q = self.q_prj[g](b.unsqueeze(2)) + q
        return q, att
