"""Ask AVST a question about a raw video: features in memory, the model, the answer and where it looked.

The features follow the extraction recipe the model was trained on (``feat_script.recipes.AVST``), made
by the registered extractors: AVST's fixed-60 frames (JPEG q75 round trip, 224x224, Kinetics
normalisation, stride-1 ResNet-18 -> [512, 14, 14], ``extract_14x14``) and VGGish on moviepy's 16 kHz
waveform (one-second examples, the last complete second repeated for short audio, ``extract_vggish``);
the loader's rows 0, 6, ..., 54 (the recipe's ``rows``) are the 10 seconds the model sees, so only
those 10 frames and examples go through the networks. Nothing is written to disk unless heat maps are
asked for.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from answering import AnswerError, StageTimer, top_k, unknown_words
from avst.data.annotations import MAX_LEN, AnnotationError, question_tokens
from avst.data.vocab import Vocab
from avst.heatmap import jet, overlay, save_png
from avst.model.checkpoint import build_from_checkpoint
from engine.device import autocast
from feat_script.decode import DecodeError
from feat_script.recipes import AVST, build
from feat_script.weights import resolve


@dataclass
class AvstAnswer:
    answer: str
    top5: list[dict]
    tokens: list[str]
    seconds: list[int]
    spatial: np.ndarray  # [10, 196]
    temporal_visual: np.ndarray  # [10]
    temporal_audio: np.ndarray  # [10]
    frames: np.ndarray = field(repr=False)  # [10, H, W, 3] uint8, the sampled frames
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"model": "avst", "answer": self.answer, "top5": self.top5, "question_tokens": self.tokens,
                "seconds": self.seconds, "temporal_visual": np.round(self.temporal_visual, 6).tolist(),
                "temporal_audio": np.round(self.temporal_audio, 6).tolist(),
                "timings_s": {k: round(v, 3) for k, v in self.timings.items()}}


def load_avst(checkpoint: Path, device: torch.device, vocab_json: Path | None = None) -> tuple[torch.nn.Module, Vocab]:
    """AVST and its vocabulary (avst.model.checkpoint): ``meta.vocab`` of our checkpoints, or ``vocab_json``
    for the authors' weights-only ``avst.pt`` / ``avst_update.pt`` (the official ``data/json/avqa-train.json``)."""
    try:
        model, meta = build_from_checkpoint(checkpoint, device, vocab_json=vocab_json, model="avst")
    except ValueError as err:
        raise AnswerError(str(err)) from None
    return model, meta.vocab


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


def video_features(video: Path, *, resnet_weights: Path | None, vggish_weights: Path | None,
                   random_init: bool, device: torch.device, amp: str, timer: StageTimer
                   ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(audio [1, 10, 128], visual [1, 10, 512, 14, 14], frames [10, H, W, 3]) of ``video``: the
    recipe's extractors with its rows, one after the other (each network freed before the next)."""
    vggish_path = resolve("vggish", vggish_weights, random_init, "--vggish-weights")
    resnet_path = resolve("resnet18", resnet_weights, random_init, "--resnet18-weights")
    # exact: the networks as built, as the CLIs' --exact (the features the checks compare)
    common = {"random_init": random_init, "device": str(device), "amp": amp, "exact": True, "rows": AVST.rows}
    with timer("VGGish"):  # 16 kHz audio, log-mel, network
        try:
            audio = build(AVST.streams["audio"], weights=vggish_path, **common).extract(video)["vggish"]
        except DecodeError as err:
            if "no audio track" in str(err):
                raise AnswerError(f"{video}: the video has no audio track, and AVST needs one (VGGish "
                                  "features); MASN answers from video alone") from None
            raise AnswerError(str(err)) from None
    with timer("ResNet-18 14x14"):  # fixed-60 frames, network
        visual_ex = build(AVST.streams["visual"], weights=resnet_path, **common)
        try:
            frames = visual_ex.sample(video)
        except DecodeError as err:
            raise AnswerError(str(err)) from None
        visual = visual_ex.features({"frames": visual_ex.prepare(frames)})["res18_14x14"]
    return torch.from_numpy(audio)[None], torch.from_numpy(visual)[None], frames


def answer(model: torch.nn.Module, audio: torch.Tensor, visual: torch.Tensor,
           question: torch.Tensor, amp: str = "off") -> tuple[torch.Tensor, dict]:
    """Answer probabilities [num_answers] and the attention maps of one question."""
    device = next(model.parameters()).device
    with torch.no_grad(), autocast(device, amp):
        out_qa, _, _, att = model(audio.to(device), visual.to(device), None, question.to(device),
                                  return_attention=True)
    return out_qa[0].float().softmax(-1).cpu(), {k: v.float().cpu().numpy() for k, v in att.items()}


def ask(video: Path, question: str, values: list[str], checkpoint: Path, *, resnet_weights: Path | None = None,
        vggish_weights: Path | None = None, random_init: bool = False, device: torch.device | None = None,
        amp: str = "off", verbose: bool = False, vocab_json: Path | None = None,
        features: Callable[[Path, StageTimer], tuple] | None = None) -> AvstAnswer:
    """The whole path: checkpoint, question, features, model. ``features(video, timer)``, when given,
    stands in for ``video_features`` (same result), e.g. to reuse a video's features across questions."""
    device = device or torch.device("cpu")
    timer = StageTimer(verbose)
    with timer("load checkpoint"):
        model, vocab = load_avst(checkpoint, device, vocab_json)
    tokens, q = encode_question(question, values, vocab, str(checkpoint))
    if features is None:
        audio, visual, frames = video_features(video, resnet_weights=resnet_weights, vggish_weights=vggish_weights,
                                               random_init=random_init, device=device, amp=amp, timer=timer)
    else:
        audio, visual, frames = features(video, timer)
    with timer("AVST"):
        probs, att = answer(model, audio, visual, q, amp)
    top = top_k(probs, vocab.answers)
    return AvstAnswer(answer=top[0]["answer"], top5=top, tokens=tokens, seconds=sampled_rows().tolist(),
                      spatial=att["spatial"], temporal_visual=att["temporal_visual"][0],
                      temporal_audio=att["temporal_audio"][0], frames=frames, timings=timer.seconds)


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
    """``t<second>.png`` spatial overlays (224x224, the sampled frames) and ``temporal.png``."""
    paths = [save_png(out_dir / f"t{sec:02d}.png", overlay(frame, weights))
             for sec, frame, weights in zip(result.seconds, result.frames, result.spatial)]
    paths.append(save_png(out_dir / "temporal.png", temporal_strip(result)))
    return paths
