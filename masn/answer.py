"""Ask MASN a question about a raw video: the four feature streams in memory, then the model.

The features are those of ``feat_script``'s MASN recipe (``feat_script.recipes.MASN``), computed for
one video without files by the registered extractors' ``extract(video)``: ``num_clips``
segment-centre frames (default: the checkpoint's ``v_max_length``) give the ResNet-152 global
vector (``extract_resnet``) and, with Faster R-CNN's 10 best boxes, the RoIAlign local features on
ResNet-152's C5 map (``extract_objects``, appearance); the ``clip_len``-frame clips around them give
I3D's averaged 7x7 map (``extract_i3d``) and its RoIAlign local features with the same boxes
(``extract_objects``, motion). The extractors run one after the other and each network is freed
before the next loads, so memory holds one of them at a time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from answering import AnswerError, StageTimer, top_k, unknown_words
from engine.device import autocast
from feat_script.decode import DecodeError
from feat_script.extract_objects import ObjectsConfig
from feat_script.recipes import MASN, build
from feat_script.sampling import MASN_CLIP_LEN, MASN_STRIDE
from feat_script.weights import resolve
from masn.checkpoint import build_from_checkpoint
from masn.data.text import Vocabulary, tokenize

TASKS = ("Count", "Action", "Trans", "FrameQA", "MS-QA")
N_CANDIDATES = 5


@dataclass
class FeatureSettings:
    """How the features are sampled; defaults follow feat_script's MASN recipe."""

    num_clips: int | None = None  # None: the checkpoint's v_max_length
    clip_len: int = MASN_CLIP_LEN
    clip_stride: int = MASN_STRIDE
    det_min_size: int = ObjectsConfig.det_min_size
    det_max_size: int = ObjectsConfig.det_max_size


@dataclass
class ExtractorWeights:
    resnet152: Path | None = None
    i3d: Path | None = None
    detector: Path | None = None
    random_init: bool = False


@dataclass
class MasnAnswer:
    task: str
    answer: str
    tokens: list[str]
    top5: list[dict] = field(default_factory=list)  # FrameQA / MS-QA
    scores: list[dict] = field(default_factory=list)  # Action / Trans: every candidate
    count_raw: float | None = None  # Count: the regression output before rounding
    boxes: np.ndarray | None = field(default=None, repr=False)  # [T, 10, 6] spatial features
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {"model": "masn", "task": self.task, "answer": self.answer, "top5": self.top5,
               "question_tokens": self.tokens, "timings_s": {k: round(v, 3) for k, v in self.timings.items()}}
        if self.scores:
            out["scores"] = self.scores
        if self.count_raw is not None:
            out["count_raw"] = round(self.count_raw, 6)
        return out


@dataclass
class LoadedMasn:
    model: torch.nn.Module
    task: str
    vocab: Vocabulary
    answers: list[str] | None
    q_max_length: int
    v_max_length: int


def load_masn(checkpoint: Path, task: str | None, device: torch.device) -> LoadedMasn:
    """MASN, its task, vocabulary and answer index from one of our checkpoints (masn.checkpoint)."""
    model, meta = build_from_checkpoint(checkpoint, device)
    if task and meta.task and task != meta.task:
        raise AnswerError(f"{checkpoint}: trained for task {meta.task}, not --task {task}")
    task = task or meta.task
    if task not in TASKS:
        raise AnswerError(f"{checkpoint}: no task in the checkpoint; pass --task ({', '.join(TASKS)})")
    if not meta.vocab_words:
        raise AnswerError(f"{checkpoint}: no word vocabulary in the checkpoint (meta.vocab_words); use a "
                          "checkpoint written by masn/main.py, or convert the authors' file with "
                          "python -m masn.convert_checkpoint ... --csv_dir <TGIF-QA question folder>")
    if task in ("FrameQA", "MS-QA") and not meta.answers:
        raise AnswerError(f"{checkpoint}: a {task} checkpoint without its answer index (meta.answers)")
    return LoadedMasn(model, task, Vocabulary(meta.vocab_words), meta.answers, meta.q_max_length,
                      meta.v_max_length)


class MasnExtractors:
    """MASN's feature streams for any number of videos: the recipe's extractors with these settings
    and weights (resolved once, so a missing file is reported before any work)."""

    def __init__(self, settings: FeatureSettings, weights: ExtractorWeights, device: torch.device,
                 amp: str = "off") -> None:
        if not settings.num_clips:
            raise ValueError("FeatureSettings.num_clips must be set (the checkpoint's v_max_length)")
        self.settings = settings
        resnet = resolve("resnet152", weights.resnet152, weights.random_init, "--resnet152-weights")
        i3d = resolve("i3d_r50", weights.i3d, weights.random_init, "--i3d-weights")
        detector = resolve("fasterrcnn", weights.detector, weights.random_init, "--detector-weights")
        # exact: the networks as built, as the CLIs' --exact (the features the checks compare)
        common = {"num_clips": settings.num_clips, "random_init": weights.random_init, "device": str(device),
                  "amp": amp, "exact": True}
        clips = {**common, "clip_len": settings.clip_len, "clip_stride": settings.clip_stride}
        self.settings_of = {
            "res_avg": {**common, "weights": resnet},
            "res_roi": {**clips, "weights": resnet, "detector_weights": detector,
                        "det_min_size": settings.det_min_size, "det_max_size": settings.det_max_size},
            "i3d_avg": {**clips, "weights": i3d},
            "i3d_roi": {**clips, "weights": i3d},
        }

    def _extract(self, stream: str, video: Path, **overrides) -> dict[str, np.ndarray]:
        """One stream's outputs; its extractor (and network) is dropped on return."""
        try:
            return build(MASN.streams[stream], **{**self.settings_of[stream], **overrides}).extract(video)
        except DecodeError as err:
            raise AnswerError(str(err)) from None

    def __call__(self, video: Path, timer: StageTimer) -> tuple[np.ndarray, ...]:
        """(res_avg, i3d_avg, res_roi, bbox, i3d_roi) of one video, each with ``num_clips`` rows."""
        video = Path(video)
        with timer("ResNet-152 global"):
            res_avg = self._extract("res_avg", video)["resnet152_avgpool"]
        with timer("Faster R-CNN boxes + ResNet-152 C5 RoIAlign"):
            appearance = self._extract("res_roi", video)
        with timer("I3D global"):
            i3d_avg = self._extract("i3d_avg", video)["i3d"]
        with timer("I3D RoIAlign"):
            boxes = {video.stem: appearance["spatial_features"]}
            i3d_roi = self._extract("i3d_roi", video, boxes=boxes)["objects"]
        return res_avg, i3d_avg, appearance["image_features"], appearance["spatial_features"], i3d_roi


def video_batch(features: tuple[np.ndarray, ...], v_max_length: int) -> list[torch.Tensor]:
    """The six video tensors of a batch of one, zero-padded to ``v_max_length`` rows."""
    t = features[0].shape[0]
    out = []
    for a in features:
        padded = np.zeros((1, v_max_length) + a.shape[1:], np.float32)
        padded[0, :t] = a
        out.append(torch.from_numpy(padded))
    return out + [torch.tensor([t])]


def encode(loaded: LoadedMasn, question: str, candidates: list[str] | None, source: str
           ) -> tuple[list[str], list[torch.Tensor]]:
    """The text tensors after the video ones (dummy answers: the model only passes them through)."""
    tokens = tokenize(question)
    if not tokens:
        raise AnswerError("the question is empty")
    words = loaded.vocab.words
    if loaded.task in ("Action", "Trans"):
        if not candidates or len(candidates) != N_CANDIDATES:
            raise AnswerError(f"task {loaded.task} needs --candidates with exactly {N_CANDIDATES} answers, "
                              f"got {len(candidates or [])}")
        unknown_words(tokens + [w for c in candidates for w in tokenize(c)], words, source)
        encoded = [loaded.vocab.encode(f"{question} {c}", loaded.q_max_length) for c in candidates]
        ids = torch.from_numpy(np.stack([e[0] for e in encoded]))[None]
        lengths = torch.tensor([[e[1] for e in encoded]])
        return tokens, [ids, lengths, torch.tensor([0]), torch.tensor([0])]
    if candidates:
        raise AnswerError(f"--candidates belong to Action/Trans, not {loaded.task}")
    unknown_words(tokens, words, source)
    ids, length = loaded.vocab.encode(question, loaded.q_max_length)
    text = [torch.from_numpy(ids)[None], torch.tensor([length]), torch.tensor([0])]
    return tokens, text + ([torch.tensor([0])] if loaded.task == "FrameQA" else [])


def answer(loaded: LoadedMasn, video: list[torch.Tensor], text: list[torch.Tensor], tokens: list[str],
           candidates: list[str] | None, amp: str = "off") -> MasnAnswer:
    device = next(loaded.model.parameters()).device
    with torch.no_grad(), autocast(device, amp):
        out, pred, _ = loaded.model(loaded.task, *(x.to(device) for x in video + text))
    out, pred = out.float().cpu(), int(pred[0])
    if loaded.task == "Count":
        return MasnAnswer(loaded.task, str(pred), tokens, count_raw=float(out[0]))
    if loaded.task in ("Action", "Trans"):
        scores = [{"answer": c, "score": round(float(s), 6)} for c, s in zip(candidates, out[0].tolist())]
        return MasnAnswer(loaded.task, candidates[pred], tokens, scores=scores)
    top = top_k(out[0].softmax(-1), loaded.answers)
    return MasnAnswer(loaded.task, loaded.answers[pred], tokens, top5=top)


def ask(video: Path, question: str, checkpoint: Path, *, task: str | None = None,
        candidates: list[str] | None = None, settings: FeatureSettings | None = None,
        weights: ExtractorWeights | None = None, device: torch.device | None = None, amp: str = "off",
        verbose: bool = False, extractors: MasnExtractors | None = None) -> MasnAnswer:
    """The whole path: checkpoint, question, features, model. ``extractors`` (built for the same
    settings) spares rebuilding the networks when asking about several videos."""
    device = device or torch.device("cpu")
    settings = settings or FeatureSettings()
    timer = StageTimer(verbose)
    with timer("load checkpoint"):
        loaded = load_masn(checkpoint, task, device)
    tokens, text = encode(loaded, question, candidates, str(checkpoint))
    settings.num_clips = settings.num_clips or loaded.v_max_length
    if settings.num_clips > loaded.v_max_length:
        raise AnswerError(f"--num-clips {settings.num_clips} is more than the checkpoint's v_max_length "
                          f"{loaded.v_max_length}")
    if extractors is None:
        with timer("build extractors"):
            extractors = MasnExtractors(settings, weights or ExtractorWeights(), device, amp)
    elif extractors.settings.num_clips != settings.num_clips:
        raise AnswerError(f"the extractors sample {extractors.settings.num_clips} clips, the question "
                          f"needs {settings.num_clips}")
    features = extractors(video, timer)
    with timer("MASN"):
        result = answer(loaded, video_batch(features, loaded.v_max_length), text, tokens, candidates, amp)
    result.boxes = features[3]
    result.timings = timer.seconds
    return result
