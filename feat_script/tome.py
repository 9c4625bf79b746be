"""Token merging (ToMe: Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023) for timm's
Vision Transformers, written from the paper.

In each block, between attention and the MLP, ``r`` tokens are merged away by bipartite soft
matching: tokens alternate into sets A (even positions) and B (odd positions); each A token is
joined by an edge to its most similar B token (cosine similarity of the attention keys, averaged
over heads); the ``r`` most similar edges are kept and their A tokens merged into their B tokens;
the rest of A (in their original order, so the class token stays first) and all of B are
concatenated. Every token carries its size (how many patches it stands for): merges are
size-weighted averages, and proportional attention adds log(size) to the attention logits, so a
merged token draws the attention its patches would have drawn together. The class token is never
merged, and at most half of the other tokens can merge in one block, which caps ``r`` there
(``merge_schedule``): ViT-L/16 at 384 px with r = 25 in its first 23 blocks goes 577 -> 14 tokens.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def merge_counts(tokens: int, r: Sequence[int], protected: int = 1) -> list[int]:
    """How many tokens each block merges away: ``r[i]``, capped at half the unprotected tokens."""
    merged = []
    for wanted in r:
        merged.append(min(wanted, (tokens - protected) // 2))
        tokens -= merged[-1]
    return merged


def merge_schedule(tokens: int, r: Sequence[int], protected: int = 1) -> list[int]:
    """Token counts entering the first block, then after each block (``len(r) + 1`` numbers)."""
    counts = [tokens]
    for merged in merge_counts(tokens, r, protected):
        counts.append(counts[-1] - merged)
    return counts


def _take(rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``rows[b, index[b, i], :]`` for ``rows`` [B, N, C] and ``index`` [B, K]."""
    return rows.gather(1, index[..., None].expand(-1, -1, rows.shape[-1]))


def bipartite_merge(x: torch.Tensor, size: torch.Tensor, metric: torch.Tensor, r: int,
                    class_token: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge ``r`` tokens of ``x`` [B, N, C] (sizes ``size`` [B, N, 1]) by bipartite soft matching on
    ``metric`` [B, N, D]; returns the merged tokens (size-weighted averages) and their sizes."""
    if r <= 0:
        return x, size
    metric = metric / metric.norm(dim=-1, keepdim=True)
    scores = metric[:, ::2] @ metric[:, 1::2].transpose(-1, -2)
    if class_token:
        scores[:, 0, :] = -torch.inf
    best, partner = scores.max(dim=-1)
    order = best.argsort(dim=-1, descending=True)
    moved, kept = order[:, :r], order[:, r:].sort(dim=-1).values
    into = partner.gather(1, moved)
    weighted = x * size
    a, b, size_a, size_b = weighted[:, ::2], weighted[:, 1::2], size[:, ::2], size[:, 1::2]
    b = b.scatter_add(1, into[..., None].expand(-1, -1, x.shape[-1]), _take(a, moved))
    size_b = size_b.scatter_add(1, into[..., None], _take(size_a, moved))
    size = torch.cat([_take(size_a, kept), size_b], dim=1)
    return torch.cat([_take(a, kept), b], dim=1) / size, size


def proportional_attention(attn: nn.Module, x: torch.Tensor,
                           size: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """timm ``Attention`` on ``x`` with log(size) added to every query's logits for each key (none
    while every size is 1); returns the output and the keys averaged over heads (the merge metric)."""
    batch, tokens, _ = x.shape
    qkv = attn.qkv(x).reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    bias = None if size is None else size.log()[:, None, None, :, 0].to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    out = attn.proj_drop(attn.proj(attn.norm(out.transpose(1, 2).reshape(batch, tokens, -1))))
    return out, k.mean(dim=1)


class ToMeViT(nn.Module):
    """A timm ``VisionTransformer`` (class token, learned absolute positions, no register tokens)
    run with token merging: ``r[i]`` tokens merged in block i (missing entries: none). ``forward``
    gives all tokens after the final norm, class token first: what timm's ``forward_features``
    gives when no token is merged."""

    def __init__(self, vit: nn.Module, r: Sequence[int]) -> None:
        super().__init__()
        unsupported = [what for what, bad in (
            ("no class token", getattr(vit, "cls_token", None) is None),
            ("register tokens", getattr(vit, "reg_token", None) is not None),
            ("positions added after the class token", getattr(vit, "no_embed_class", False)),
            ("dynamic image size", getattr(vit, "dynamic_img_size", False)),
            ("gated attention", any(getattr(b.attn, "gate", None) is not None for b in vit.blocks)),
        ) if bad]
        if unsupported:
            raise ValueError(f"token merging supports plain class-token ViTs; this one has {', '.join(unsupported)}")
        if len(r) > len(vit.blocks) or any(v < 0 for v in r):
            raise ValueError(f"r {list(r)}: need at most {len(vit.blocks)} non-negative entries, one per block")
        self.vit = vit
        self.r = [*r, *[0] * (len(vit.blocks) - len(r))]

    def schedule(self) -> list[int]:
        """Token counts before the first block and after each block."""
        return merge_schedule(self.vit.patch_embed.num_patches + 1, self.r)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        x = vit.patch_embed(images)
        x = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + vit.pos_embed
        x = vit.norm_pre(vit.patch_drop(vit.pos_drop(x)))
        size = None
        for block, merged in zip(vit.blocks, merge_counts(x.shape[1], self.r)):
            out, keys = proportional_attention(block.attn, block.norm1(x), size)
            x = x + block.drop_path1(block.ls1(out))
            if merged:
                if size is None:
                    size = x.new_ones(x.shape[0], x.shape[1], 1)
                x, size = bipartite_merge(x, size, keys, merged)
            x = x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))
        return vit.norm(x)
