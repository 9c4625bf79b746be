"""VGGish audio features: AVST's recipe (default) or AudioSet's standard one.

    python -m feat_script.extract_vggish --videos data/music-avqa/videos --out data/music-avqa/feats/vggish \\
        --weights checkpoints/vggish.pt

``--recipe avst`` (default): 60 non-overlapping one-second examples, the raw 128-d embedding after
ReLU, no PCA: one ``[60, 128]`` float32 ``.npy`` per video, what AVST's loaders read. Audio shorter
than 60 s repeats its last complete second (the authors' advice); shorter than 1 s is a failure.
``--recipe standard``: 0.96 s examples with a 0.96 s hop, ``[N, 128]``; ``--pca vggish_pca_params.npz``
adds AudioSet's PCA whitening and 8-bit quantisation (values 0..255 stored as float32;
``--no-quantize`` keeps the PCA output). The waveform is the one ``extract_audio`` would write (what
moviepy's ``write_audiofile(fps=16000)`` gives, the WAV the original read), averaged over channels.
``--weights`` is our converted file (``python -m feat_script.vggish.convert``).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.cli import only_when, positive_int
from feat_script.base import ConfigError, Extractor, ExtractorConfig, main
from feat_script.decode import DecodeError
from feat_script.extract_audio import first_seconds_16k, iter_audio_16k, load_audio_16k
from feat_script.manifest import sha256_file
from feat_script.recipes import AVST_SECONDS
from feat_script.streams import RowStream, is_long
from feat_script.vggish import VGGish, avst_examples, load_pca, standard_examples
from feat_script.vggish.mel import SAMPLE_RATE
from feat_script.vggish.recipes import standard_examples_stream
from feat_script.weights import build_loaded


def standard_example_blocks(video: Path) -> Iterator[np.ndarray]:
    """The standard recipe's examples of a long video, float32 blocks, from its streamed waveform."""
    try:
        waves = (block / 32768.0 for block in iter_audio_16k(video, SAMPLE_RATE))
        for examples in standard_examples_stream(waves):
            yield examples.float().numpy()
    except ValueError as err:
        raise DecodeError(f"{video}: {err}") from err


@dataclasses.dataclass
class VggishConfig(ExtractorConfig):
    recipe: str = "avst"  # avst: one-second examples, raw embedding; standard: 0.96 s hop
    num_secs: int = AVST_SECONDS  # examples per video (avst recipe)
    pca: Path | None = None  # vggish_pca_params.npz (standard recipe)
    no_quantize: bool = False
    rows: tuple[int, ...] | None = None  # avst recipe: keep only these examples (AVST's loader rows)


class VggishExtractor(Extractor):
    Config = VggishConfig
    name = "vggish"
    description = __doc__
    default_store = "npy"
    default_batch_size = 64
    batched_input = "examples"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--recipe", choices=["avst", "standard"], default="avst",
                            help="avst: 60 one-second examples, raw embedding; standard: 0.96 s hop")
        parser.add_argument("--num-secs", type=positive_int, default=AVST_SECONDS,
                            help="examples per video (avst recipe)")
        only_when(parser, ["--num-secs"], lambda args: args.recipe == "avst", "with --recipe standard")
        parser.add_argument("--pca", type=Path, default=None,
                            help="vggish_pca_params.npz: PCA + 8-bit quantisation (standard recipe)")
        parser.add_argument("--no-quantize", action="store_true", help="with --pca: keep the PCA output")
        only_when(parser, ["--no-quantize"], lambda args: args.pca is not None, "without --pca")

    def __init__(self, config: VggishConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        if c.pca is not None and c.recipe != "standard":
            raise ConfigError("--pca belongs to --recipe standard (AVST's features are raw embeddings)")
        self.pca = load_pca(c.pca, quantize=not c.no_quantize) if c.pca is not None else None

    def sampling(self) -> dict[str, Any]:
        recipe = {"recipe": self.config.recipe, "sample_rate": SAMPLE_RATE, "channels": "mean",
                  "log_mel": "Hann 400/160, FFT 512 magnitude, 64 HTK mel 125-7500 Hz, log(x+0.01)",
                  "example": "96 frames"}
        if self.config.recipe == "avst":
            recipe.update(num_secs=self.config.num_secs, short_audio="last complete second repeated")
            if self.config.rows is not None:
                recipe.update(rows=list(self.config.rows))
        else:
            recipe.update(hop_frames=96, pca={"sha256": sha256_file(self.config.pca)} if self.pca is not None else None,
                          quantized=self.pca is not None and not self.config.no_quantize)
        return recipe

    def row_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"": (128,)}

    def model_info(self) -> dict[str, Any]:
        return {"arch": "vggish", "layer": "fc2 embedding after ReLU"}

    def load(self, video: Path) -> dict[str, np.ndarray | RowStream]:
        if self.config.recipe == "standard" and is_long(video):
            return {"examples": RowStream(functools.partial(standard_example_blocks, video))}
        try:
            if self.config.recipe == "avst":
                rows = self.config.rows
                # the rows' seconds are all that is decoded: the last complete second (repeated for short
                # audio) is the same whether the decoding stops after the last row or after num_secs
                seconds = self.config.num_secs if rows is None else max(rows) + 1
                wave = first_seconds_16k(video, seconds, SAMPLE_RATE) / 32768.0
                examples = avst_examples(wave, SAMPLE_RATE, self.config.num_secs, rows)
            else:
                examples = standard_examples(load_audio_16k(video, SAMPLE_RATE) / 32768.0, SAMPLE_RATE)
        except ValueError as err:
            raise DecodeError(f"{video}: {err}") from err
        return {"examples": examples.float().numpy()}

    def build_model(self) -> torch.nn.Module:
        self.weights_path = self.resolve_weights("vggish")
        model = build_loaded(VGGish, self.weights_path, "converted VGGish").eval()
        return model if self.pca is None else torch.nn.Sequential(model, self.pca)


if __name__ == "__main__":
    raise SystemExit(main(VggishExtractor))
