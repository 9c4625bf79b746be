"""Small configurations of the clip and vit-tome extractors' networks, built by the same code as the
full ones (an open_clip model configuration, timm create_model arguments), for the tests and for
``scripts/bench_extract.py --small`` on a CPU; and an image with photographic detail for the
preprocessing tests."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

TINY_CLIP = "tiny-test-ViT-14"  # an open_clip configuration registered by tiny_clip_arch()
TINY_VIT = {"img_size": 64, "embed_dim": 32, "depth": 4, "num_heads": 2}  # timm create_model arguments
TINY_TOME = {"arch_overrides": TINY_VIT, "r": 3, "merge_layers": 3}  # vit-tome Config fields: 17 -> 8 tokens


def tiny_clip_arch() -> str:
    """Register (once per process) and name a two-layer CLIP with OpenAI's tokenizer and 28-px images."""
    import open_clip

    if open_clip.get_model_config(TINY_CLIP) is None:
        config = {"embed_dim": 24,
                  "vision_cfg": {"image_size": 28, "layers": 2, "width": 32, "head_width": 16, "patch_size": 14},
                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
        folder = Path(tempfile.mkdtemp(prefix="tiny-clip-"))
        (folder / f"{TINY_CLIP}.json").write_text(json.dumps(config))
        open_clip.add_model_config(folder)
    return TINY_CLIP


def photo_like(width: int = 517, height: int = 389) -> np.ndarray:
    """An image with photographic detail: smooth shading, edges and noise at every scale."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    x, y = x / width, y / height
    base = np.stack([np.sin(7 * x + 3 * y), np.cos(11 * x * y), (x > 0.4) & (y < 0.7)], -1).astype(float)
    noise = rng.normal(0, 0.15, (height // 8 + 1, width // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:height, :width]
    return np.clip((base * 0.5 + 0.5 + noise + rng.normal(0, 0.05, base.shape)) * 255, 0, 255).astype(np.uint8)
