"""Ask AVST-family models questions about raw videos: ``AvstAnswerer`` (built once) and the one-call ``ask``.

The features follow the extraction recipe the model was trained on (``feat_script.recipes.AVST``), made
by the recipe's extractors: AVST's fixed-60 frames (JPEG q75 round trip, 224x224, Kinetics
normalisation, stride-1 ResNet-18 -> [512, 14, 14], ``extract_14x14``) and VGGish on moviepy's 16 kHz
waveform (one-second examples, the last complete second repeated for short audio, ``extract_vggish``);
the loader's rows 0, 6, ..., 54 (the recipe's ``rows``) are the 10 seconds the model sees, so only
those 10 frames and examples go through the networks. The network is the checkpoint's registered
variant (``avst.variants``). Nothing is written to disk unless heat maps are asked for.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avst.data.annotations import MAX_LEN, AnnotationError, question_tokens
from avst.data.vocab import Vocab
from avst.heatmap import jet, overlay, save_png
from avst.model.checkpoint import AvstMeta, build_from_checkpoint
from avst.variants import variant
from engine.checkpoint import CheckpointError
from engine.device import autocast
from feat_script.answerer import (
    Answerer,
    AnswerError,
    FeatureCache,
    StageTimer,
    VideoFeatures,
    VideoFile,
    top_k,
    unknown_words,
)
from feat_script.decode import DecodeError, probe
from feat_script.recipes import AVST, build
from feat_script.weights import resolve


@dataclass
class AvstAnswer:
    answer: str
    top5: list[dict]
    tokens: list[str]
    seconds: list[int]
    spatial: np.ndarray | None  # [10, 196]; None for a variant without spatial attention
    temporal_visual: np.ndarray  # [10]
    temporal_audio: np.ndarray  # [10]
    frames: np.ndarray = field(repr=False)  # [10, H, W, 3] uint8, the sampled frames
    timings: dict[str, float] = field(default_factory=dict)
    model: str = "avst"  # the variant that answered
    features: str = "computed"  # or "cached" / "disk": where this answer's video features came from

    def to_json(self) -> dict:
        return {"model": self.model, "answer": self.answer, "top5": self.top5, "question_tokens": self.tokens,
                "seconds": self.seconds, "temporal_visual": np.round(self.temporal_visual, 6).tolist(),
                "temporal_audio": np.round(self.temporal_audio, 6).tolist(), "features": self.features,
                "timings_s": {k: round(v, 3) for k, v in self.timings.items()}}


def load_avst(checkpoint: Path, device: torch.device, vocab_json: Path | None = None
              ) -> tuple[torch.nn.Module, AvstMeta]:
    """The checkpoint's network (its registered variant) and record (avst.model.checkpoint): ``meta.vocab``
    of our checkpoints, or ``vocab_json`` for the authors' weights-only ``avst.pt`` / ``avst_update.pt``
    (the official ``data/json/avqa-train.json``)."""
    try:
        return build_from_checkpoint(checkpoint, device, vocab_json=vocab_json)
    except (ValueError, CheckpointError) as err:
        raise AnswerError(str(err)) from None


def encode_question(question: str, values: list[str], vocab: Vocab, source: str) -> tuple[list[str], torch.Tensor]:
    """The original's tokens (template slots filled by ``values``) -> [1, 14] word indices."""
    text = question.rstrip()
    if not text.endswith(("?", "？")):
        text += "?"  # the original tokenizer drops the last character of the question
    try:
        tokens = question_tokens(text, values, "--question")
    except AnnotationError as err:
        raise AnswerError(f"{err} (give one --values word per <...> slot)") from None
    unknown_words(tokens, vocab.words[1:], source)
    ix = {w: i for i, w in enumerate(vocab.words)}
    ids = [ix[w] for w in tokens] + [0] * (MAX_LEN - len(tokens))
    return tokens, torch.tensor([ids])


def sampled_rows() -> np.ndarray:
    return np.asarray(AVST.rows)


class AvstFeatures:
    """The recipe's two extractors (VGGish, ResNet-18 14x14) with its rows; weights resolved here, so a
    missing file is reported first. Unless ``one_shot``, both networks are built from here on in a
    thread of their own (while the caller loads its checkpoint) and kept; ``one_shot``: each is built on
    first use and freed after it, one network at a time."""

    def __init__(self, *, resnet_weights: Path | None, vggish_weights: Path | None, random_init: bool,
                 device: torch.device, amp: str, one_shot: bool = False) -> None:
        vggish_path = resolve("vggish", vggish_weights, random_init, "--vggish-weights")
        resnet_path = resolve("resnet18", resnet_weights, random_init, "--resnet18-weights")
        # exact: the networks as built, as the CLIs' --exact (the features the checks compare)
        common = {"random_init": random_init, "device": str(device), "amp": amp, "exact": True, "rows": AVST.rows}
        self.audio = build(AVST.streams["audio"], weights=vggish_path, **common)
        self.visual = build(AVST.streams["visual"], weights=resnet_path, **common)
        self.one_shot = one_shot
        # the builds, the frames' decode and (one-shot) VGGish's build: none waits for another's thread
        self.pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="avst-features")
        self.built = None if one_shot else [self.pool.submit(x.ready) for x in (self.audio, self.visual)]

    def __call__(self, video: VideoFile, timer: StageTimer) -> dict[str, np.ndarray]:
        """``audio`` [10, 128], ``visual`` [10, 512, 14, 14] and ``frames`` [10, H, W, 3] of one video. While
        the audio decodes here, a thread decodes the frames (an ffmpeg process it mostly waits on) and
        the networks are built (``one_shot``: VGGish, in another thread)."""
        probe(video.path)  # once, remembered for both streams, before they run side by side
        sampled = self.pool.submit(self.visual.sample, video.path)
        vggish, resnet = self.built or (self.pool.submit(self.audio.ready), None)
        with timer("VGGish"):  # 16 kHz audio, log-mel, network
            try:
                item = self.audio.load(video.path)
            except DecodeError as err:
                sampled.cancel()
                if "no audio track" in str(err):
                    raise AnswerError(f"{video.path}: the video has no audio track, and AVST needs one "
                                      "(VGGish features); MASN answers from video alone") from None
                raise
            vggish.result()
            audio = self.audio.features(item)["vggish"]
            self._done(self.audio)
        with timer("ResNet-18 14x14"):  # fixed-60 frames (decoded meanwhile), network
            frames = sampled.result()
            if resnet:
                resnet.result()
            visual = self.visual.features({"frames": self.visual.prepare(frames)})["res18_14x14"]
            self._done(self.visual)
        return {"audio": audio, "visual": visual, "frames": frames}

    def _done(self, extractor) -> None:
        if self.one_shot:
            extractor.release()


def answer(model: torch.nn.Module, audio: torch.Tensor, visual: torch.Tensor,
           question: torch.Tensor, amp: str = "off") -> tuple[torch.Tensor, dict]:
    """Answer probabilities [num_answers] and the attention maps of one question."""
    device = next(model.parameters()).device
    with torch.no_grad(), autocast(device, amp):
        out_qa, _, _, att = model(audio.to(device), visual.to(device), None, question.to(device),
                                  return_attention=True)
    return out_qa[0].float().softmax(-1).cpu(), {k: v.float().cpu().numpy() for k, v in att.items()}


class AvstAnswerer(Answerer):
    """One AVST-family checkpoint (any registered variant) and the feature networks, built once:
    ``features(video)``, then ``ask(features_or_video, question, values)`` as often as needed
    (``ask_many`` for several questions about one video: ``[{"question", "values"}]``)."""

    name = "avst"

    def __init__(self, checkpoint: Path, *, resnet_weights: Path | None = None, vggish_weights: Path | None = None,
                 random_init: bool = False, device: torch.device | None = None, amp: str = "off",
                 vocab_json: Path | None = None, cache: FeatureCache | None = None, one_shot: bool = False) -> None:
        super().__init__(device=device or torch.device("cpu"), amp=amp, cache=cache, one_shot=one_shot)
        self.checkpoint = Path(checkpoint)
        self.weights = (resnet_weights, vggish_weights, random_init)
        # first: a missing weights file is reported before the checkpoint is read, and the networks build
        # while it is
        self.networks = AvstFeatures(resnet_weights=resnet_weights, vggish_weights=vggish_weights,
                                     random_init=random_init, device=self.device, amp=amp, one_shot=one_shot)
        self.model, meta = load_avst(self.checkpoint, self.device, vocab_json)
        self.vocab, self.variant = meta.vocab, variant(meta.model)

    def recipe_key(self) -> str:
        return repr((*self.weights, str(self.device), self.amp))

    def compute(self, video: VideoFile, timer: StageTimer) -> dict[str, np.ndarray]:
        return self.networks(video, timer)

    question_fields = ("question", "values")

    def check(self, question: str, values: list[str] | None = None) -> None:
        encode_question(question, list(values or []), self.vocab, str(self.checkpoint))

    def ask(self, features_or_video: str | Path | VideoFile | VideoFeatures, question: str,
            values: list[str] | None = None, timer: StageTimer | None = None) -> AvstAnswer:
        """The answer to one question (checked against the vocabulary before any feature is computed)."""
        timer = timer or StageTimer()
        tokens, q = encode_question(question, list(values or []), self.vocab, str(self.checkpoint))
        features = self.as_features(features_or_video, timer)
        arrays = features.arrays
        with timer(self.variant.name.upper()):
            probs, att = answer(self.model, torch.from_numpy(arrays["audio"])[None],
                                torch.from_numpy(arrays["visual"])[None], q, self.amp)
        top = top_k(probs, self.vocab.answers)
        return AvstAnswer(answer=top[0]["answer"], top5=top, tokens=tokens, seconds=sampled_rows().tolist(),
                          spatial=att.get("spatial"), temporal_visual=att["temporal_visual"][0],
                          temporal_audio=att["temporal_audio"][0], frames=arrays["frames"], timings=timer.seconds,
                          model=self.variant.name, features=features.source)


def ask(video: Path, question: str, values: list[str], checkpoint: Path, *, resnet_weights: Path | None = None,
        vggish_weights: Path | None = None, random_init: bool = False, device: torch.device | None = None,
        amp: str = "off", verbose: bool = False, vocab_json: Path | None = None) -> AvstAnswer:
    """One question, start to end: a one-shot ``AvstAnswerer`` (each network freed after its use)."""
    timer = StageTimer(verbose)
    with timer("load checkpoint"):
        answerer = AvstAnswerer(checkpoint, resnet_weights=resnet_weights, vggish_weights=vggish_weights,
                                random_init=random_init, device=device, amp=amp, vocab_json=vocab_json,
                                cache=FeatureCache(0), one_shot=True)
    return answerer.ask(video, question, values, timer)


def temporal_strip(result: AvstAnswer, cell: int = 48) -> np.ndarray:
    """RGB strip: one column per sampled second, visual weights on the top row, audio below (JET)."""
    rows = []
    for weights in (result.temporal_visual, result.temporal_audio):
        w = np.asarray(weights, np.float32)
        scaled = (w - w.min()) / max(float(w.max() - w.min()), 1e-12)
        colours = jet(np.round(scaled * 255).astype(np.uint8))
        rows.append(np.repeat(np.repeat(colours[None, :, :], cell, axis=0), cell, axis=1))
    return np.concatenate(rows, axis=0)


def write_heatmaps(result: AvstAnswer, out_dir: Path) -> list[Path]:
    """``t<second>.png`` spatial overlays (224x224, the sampled frames; variants with spatial attention)
    and ``temporal.png``."""
    spatial = [] if result.spatial is None else result.spatial
    paths = [save_png(out_dir / f"t{sec:02d}.png", overlay(frame, weights))
             for sec, frame, weights in zip(result.seconds, result.frames, spatial)]
    paths.append(save_png(out_dir / "temporal.png", temporal_strip(result)))
    return paths
