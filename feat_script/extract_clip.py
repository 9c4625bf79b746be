"""CLIP frame and text features: OpenAI's ViT-L/14@336px through open_clip, ``[T, 768]`` float32 per video.

    python -m feat_script clip --videos data/music-avqa/videos --out feats/frame_ViT-L14@336px \\
        --weights checkpoints/ViT-L-14-336px.pt

Frames: MUSIC-AVQA's 1-fps rule (the frame in the middle of each second, ``--seconds`` of them,
short videos padded by cycling their last second; ``feat_script.sampling.read_fixed60``), passed
through a PIL JPEG of ``--jpeg-quality`` as the authors' frames were written to disk and read back
(0: none), then CLIP's transform: bicubic resize of the short side to 336, centre crop 336, CLIP
mean / std. Output: ``encode_image``, the class token after ``ln_post`` and the projection, not
L2-normalised (what QA-TIGER's and TSPM's loaders read). ``Clip.encode_texts`` gives the text
tower's ``encode_text`` (the end-of-text token after ``ln_final`` and the projection) for TSPM's
question and prompt files. ``--weights``: OpenAI's ``ViT-L-14-336px.pt`` (a TorchScript file, read
without running it, ``feat_script.jit_archive``) or an open_clip state_dict. Needs the ``clip`` extra.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from engine.cli import Bounded, positive_int
from feat_script.base import ConfigError, Extractor, ExtractorConfig, main
from feat_script.jit_archive import is_torchscript, read_torchscript_tensors
from feat_script.optional import require
from feat_script.preprocess import jpeg_roundtrip, resize_short_centre_crop
from feat_script.recipes import AVST_SECONDS, JPEG_QUALITY
from feat_script.recipes_sota import CLIP_ARCH, CLIP_MEAN, CLIP_STD
from feat_script.sampling import read_fixed60
from feat_script.weights import load_state, read_state_dict

# Tensors of OpenAI's archive that are not weights of open_clip's model (open_clip drops them too).
OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size")


@dataclasses.dataclass
class ClipConfig(ExtractorConfig):
    seconds: int = AVST_SECONDS  # frames per video (one per second)
    jpeg_quality: int = JPEG_QUALITY  # 0: no JPEG round trip
    arch: str = CLIP_ARCH  # open_clip model config (tests register small ones)


def clip_config(arch: str) -> dict[str, Any]:
    """open_clip's configuration of ``arch`` (embed_dim, vision_cfg, text_cfg)."""
    config = require("open_clip").get_model_config(arch)
    if config is None:
        raise ValueError(f"open_clip has no model configuration {arch!r}")
    return config


def clip_preprocess(frames: np.ndarray, image_size: int, jpeg_quality: int) -> np.ndarray:
    """uint8 frames -> JPEG round trip (unless 0), bicubic resize of the short side and centre crop to
    ``image_size``, still uint8 (CLIP mean / std are applied on the device)."""
    if jpeg_quality:
        frames = jpeg_roundtrip(frames, jpeg_quality)
    return resize_short_centre_crop(frames, image_size, image_size, Image.BICUBIC)


def read_clip_weights(path: Path) -> dict:
    """The tensors of OpenAI's TorchScript file or of an open_clip state_dict (nothing in either is run)."""
    return read_torchscript_tensors(path) if is_torchscript(path) else read_state_dict(path, "CLIP")


def load_clip_weights(model: torch.nn.Module, state: dict, path: Path) -> torch.nn.Module:
    """``state`` (read from ``path``) into ``model``, strictly. A TorchScript file also holds tensors that
    are no weights: ``OPENAI_EXTRAS``, the model's non-persistent buffers and the per-block ``attn_mask``
    of OpenAI's text transformer (causal masks), which are left out."""
    transient = {name for name, _ in model.named_buffers()} - set(model.state_dict())
    state = {k: v for k, v in state.items()
             if k not in OPENAI_EXTRAS and k not in transient and not k.endswith(".attn_mask")}
    return load_state(model, state, path, "CLIP")


class Clip(Extractor):
    Config = ClipConfig
    name = "clip"
    description = __doc__
    default_batch_size = 8  # frames per forward: the attention maps of 60 ViT-L frames take about 2 GB on CPU
    pixel_stats = (CLIP_MEAN, CLIP_STD)

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--seconds", type=positive_int, default=AVST_SECONDS,
                            help="frames per video, one per second")
        parser.add_argument("--jpeg-quality", type=Bounded(int, 0, 100), default=JPEG_QUALITY,
                            help="pass frames through a PIL JPEG of this quality first, as the authors' frames "
                            "on disk; 0 = use the decoded frames as they are")

    def __init__(self, config: ClipConfig | None = None) -> None:
        super().__init__(config)
        if self.config.seconds < 1:
            raise ConfigError(f"--seconds {self.config.seconds}: need at least 1 frame per video")

    def image_size(self) -> int:
        return int(clip_config(self.config.arch)["vision_cfg"]["image_size"])

    def sampling(self) -> dict:
        size = self.image_size()
        return {"mode": "fixed60", "seconds": self.config.seconds, "jpeg_roundtrip_quality":
                self.config.jpeg_quality or None, "resize_short": size, "crop": size,
                "interpolation": "PIL bicubic", "mean": CLIP_MEAN, "std": CLIP_STD}

    def row_shapes(self) -> dict:
        return {"": (int(clip_config(self.config.arch)["embed_dim"]),)}

    def model_info(self) -> dict:
        return {"arch": f"open_clip {self.config.arch} (QuickGELU, OpenAI)",
                "output": "encode_image: class token after ln_post @ proj, not L2-normalised"}

    def load(self, video: Path) -> dict[str, np.ndarray]:
        frames = read_fixed60(video, self.config.seconds)
        return {"frames": clip_preprocess(frames, self.image_size(), self.config.jpeg_quality)}

    def build_model(self) -> torch.nn.Module:
        open_clip = require("open_clip")
        clip_config(self.config.arch)
        self.weights_path = self.resolve_weights("clip_vit_l14_336")
        state = None if self.weights_path is None else read_clip_weights(self.weights_path)
        model = open_clip.create_model(self.config.arch, pretrained=None, force_quick_gelu=True)
        if state is not None:
            load_clip_weights(model, state, self.weights_path)
        return model.eval()

    def forward(self, model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return model.encode_image(self.inputs(batch))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``encode_text`` of each text (open_clip's tokenizer: 77 tokens), float32 ``[N, embed_dim]``,
        in chunks of ``--batch-size`` under ``--amp``."""
        model, device = self.ready()
        tokenizer = require("open_clip").get_tokenizer(self.config.arch)
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.config.batch_size):
                tokens = tokenizer(list(texts[start:start + self.config.batch_size])).to(device)
                with self.autocast(device):
                    out.append(model.encode_text(tokens).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, *self.row_shapes()[""]), np.float32)


if __name__ == "__main__":
    raise SystemExit(main(Clip))
