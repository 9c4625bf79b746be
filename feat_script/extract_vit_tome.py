"""Token-merged ViT patch tokens: timm ``vit_large_patch16_384`` with ToMe, ``[T, 14, 1024]`` float32 per video.

    python -m feat_script vit-tome --videos data/music-avqa/videos --out feats/visual_tome14 \\
        --weights checkpoints/vit_large_patch16_384.augreg_in21k_ft_in1k.safetensors

QA-TIGER's and TSPM's patch features: every token after the final norm (class token first) of the
supervised ImageNet-21k -> 1k ViT-L/16 at 384 px, with token merging (``feat_script.tome``: bipartite
soft matching, size-weighted averages, proportional attention) of ``--r`` tokens in each of the first
``--merge-layers`` blocks: 577 -> 14 tokens with the defaults 25 and 23. Frames: MUSIC-AVQA's 1-fps
rule (middle of each second, short videos padded by cycling their last second) after a PIL JPEG
round trip of ``--jpeg-quality`` (0: none). ``--preprocess tspm`` (default; TSPM's script): bicubic
resize of the short side to int(256 / 224 * 384) = 438, centre crop 384, mean = std = 0.5;
``--preprocess qa-tiger`` (QA-TIGER's script): bilinear resize to 384 x 384, ImageNet mean / std.
``--tspm-compat`` feeds the frames as TSPM's script picked them (``linspace(0, n - 2, n)`` as integers:
frame 0 twice, the last frame dropped). ``--weights``: timm's safetensors file or a state_dict.
Needs the ``clip`` extra.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from engine.cli import Bounded, non_negative_int, positive_int
from feat_script.base import ConfigError, Extractor, ExtractorConfig, main
from feat_script.optional import require
from feat_script.preprocess import jpeg_roundtrip, resize_frames, resize_short_centre_crop
from feat_script.recipes import AVST_SECONDS, JPEG_QUALITY
from feat_script.recipes_sota import TOME_ARCH, TOME_LAYERS, TOME_PREPROCESS, TOME_R
from feat_script.sampling import read_fixed60
from feat_script.tome import ToMeViT, merge_schedule
from feat_script.weights import load_state, read_state_dict

IMAGE_SIZE = 384


@dataclasses.dataclass
class VitTomeConfig(ExtractorConfig):
    r: int = TOME_R  # tokens merged per block
    merge_layers: int = TOME_LAYERS  # blocks that merge (the first ones)
    preprocess: str = "tspm"  # or qa-tiger (TOME_PREPROCESS)
    seconds: int = AVST_SECONDS
    jpeg_quality: int = JPEG_QUALITY  # 0: no JPEG round trip
    tspm_compat: bool = False  # TSPM's frame pick: linspace(0, n - 2, n) as integers
    arch_overrides: dict[str, Any] | None = None  # timm create_model arguments (tests' small configurations)


def tspm_frame_rows(n: int) -> np.ndarray:
    """The rows TSPM's ToMe script takes from ``n`` frames for ``n`` outputs: 0, 0, 1, ..., n - 2."""
    return np.linspace(0, n - 2, n, dtype=int)


def tome_preprocess(frames: np.ndarray, image_size: int, preprocess: str, jpeg_quality: int) -> np.ndarray:
    """uint8 frames -> JPEG round trip (unless 0) and the resize / crop of ``preprocess``, still uint8."""
    if jpeg_quality:
        frames = jpeg_roundtrip(frames, jpeg_quality)
    ratio = TOME_PREPROCESS[preprocess]["resize_ratio"]
    if ratio is None:
        return resize_frames(frames, image_size, image_size)
    return resize_short_centre_crop(frames, int(ratio * image_size), image_size, Image.BICUBIC)


def read_vit_weights(path: Path) -> dict:
    """timm's ``model.safetensors`` or a ``.pth`` state_dict (the classifier head included)."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError) as err:
            raise ConfigError(f"--weights {path}: not a safetensors file ({err}); pass timm's "
                              "model.safetensors of vit_large_patch16_384.augreg_in21k_ft_in1k") from err
    return read_state_dict(path, "ViT")


class VitTome(Extractor):
    Config = VitTomeConfig
    name = "vit_tome"
    description = __doc__
    default_batch_size = 8  # frames per forward: the attention maps of 60 ViT-L frames take about 2 GB on CPU

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--r", type=non_negative_int, default=TOME_R, help="tokens merged in each merging block")
        parser.add_argument("--merge-layers", type=non_negative_int, default=TOME_LAYERS,
                            help="merging blocks (the first ones)")
        parser.add_argument("--preprocess", choices=sorted(TOME_PREPROCESS), default="tspm",
                            help="tspm: resize 438 bicubic, crop 384, mean=std=0.5; qa-tiger: resize 384x384, "
                            "ImageNet mean/std")
        parser.add_argument("--seconds", type=positive_int, default=AVST_SECONDS,
                            help="frames per video, one per second")
        parser.add_argument("--jpeg-quality", type=Bounded(int, 0, 100), default=JPEG_QUALITY,
                            help="PIL JPEG round trip of this quality first (0 = none)")
        parser.add_argument("--tspm-compat", action="store_true",
                            help="frames as TSPM's script picked them: frame 0 twice, the last one dropped")

    def __init__(self, config: VitTomeConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        if c.preprocess not in TOME_PREPROCESS:
            raise ConfigError(f"--preprocess {c.preprocess}: choose one of {', '.join(TOME_PREPROCESS)}")
        if c.r < 0 or not 0 <= c.merge_layers <= self.depth():
            raise ConfigError(f"--r {c.r} --merge-layers {c.merge_layers}: need r >= 0 and 0 <= merge-layers <= "
                              f"{self.depth()} (the blocks)")
        if c.seconds < 1 or (c.seconds < 2 and c.tspm_compat):
            raise ConfigError(f"--seconds {c.seconds}: need at least 1 frame per video (2 with --tspm-compat)")
        stats = TOME_PREPROCESS[c.preprocess]
        self.pixel_stats = (stats["mean"], stats["std"])

    def arch_args(self) -> dict[str, Any]:
        return {"img_size": IMAGE_SIZE, "depth": 24, "embed_dim": 1024, "patch_size": 16,
                **(self.config.arch_overrides or {})}

    def depth(self) -> int:
        return int(self.arch_args()["depth"])

    def schedule(self) -> list[int]:
        """Token counts before the first block and after each merging block."""
        a, c = self.arch_args(), self.config
        return merge_schedule((a["img_size"] // a["patch_size"]) ** 2 + 1, [c.r] * c.merge_layers)

    def sampling(self) -> dict:
        c, size = self.config, self.arch_args()["img_size"]
        ratio = TOME_PREPROCESS[c.preprocess]["resize_ratio"]
        return {"mode": "fixed60", "seconds": c.seconds, "rows": "tspm-compat" if c.tspm_compat else "all",
                "jpeg_roundtrip_quality": c.jpeg_quality or None, "preprocess": c.preprocess,
                "resize": [size, size] if ratio is None else int(ratio * size), "crop": None if ratio is None else size,
                "interpolation": "PIL bilinear" if ratio is None else "PIL bicubic",
                "mean": self.pixel_stats[0], "std": self.pixel_stats[1]}

    def row_shapes(self) -> dict:
        return {"": (self.schedule()[-1], int(self.arch_args()["embed_dim"]))}

    def model_info(self) -> dict:
        return {"arch": f"timm {TOME_ARCH}", "overrides": self.config.arch_overrides,
                "output": "all tokens after the final norm, class token first",
                "token_merging": {"r": self.config.r, "merge_layers": self.config.merge_layers,
                                  "proportional_attention": True, "tokens": self.schedule()}}

    def load(self, video: Path) -> dict[str, np.ndarray]:
        c = self.config
        frames = read_fixed60(video, c.seconds)
        if c.tspm_compat:
            frames = frames[tspm_frame_rows(len(frames))]
        return {"frames": tome_preprocess(frames, self.arch_args()["img_size"], c.preprocess, c.jpeg_quality)}

    def build_model(self) -> torch.nn.Module:
        self.weights_path = self.resolve_weights(TOME_ARCH)
        state = None if self.weights_path is None else read_vit_weights(self.weights_path)
        vit = require("timm").create_model(TOME_ARCH, pretrained=False, **self.config.arch_overrides or {})
        if state is not None:
            load_state(vit, state, self.weights_path, "ViT")
        vit.reset_classifier(0)
        return ToMeViT(vit, [self.config.r] * self.config.merge_layers).eval()


if __name__ == "__main__":
    raise SystemExit(main(VitTome))
