"""Ask MASN a question about a raw video: the four feature streams in memory, then the model.

The features are those of ``feat_script``'s MASN recipe, computed for one video without files:
``num_clips`` segment-centre frames (default: the checkpoint's ``v_max_length``) give the ResNet-152
global vector (Resize 256, CentreCrop 224) and, with Faster R-CNN's 10 best boxes, the RoIAlign
local features on ResNet-152's C5 map (224x224, no crop); the ``clip_len``-frame clips around them
give I3D's averaged 7x7 map (global mean and RoIAlign local with the same boxes). One ResNet-152
serves both appearance streams.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision

from answering import AnswerError, StageTimer, top_k, unknown_words, weights_file
from engine.device import autocast
from feat_script.base import IMAGENET_MEAN, IMAGENET_STD, load_weights
from feat_script.decode import DecodeError, count_frames, read_frames
from feat_script.extract_i3d import I3dExtractor, build_i3d, load_clips
from feat_script.extract_objects import DETECTOR_FILE, RESNET_SIZE, ObjectsExtractor
from feat_script.extract_resnet import WEIGHTS as RESNET_WEIGHTS
from feat_script.extract_resnet import ResNetGlobal
from feat_script.objects import DETECTOR_HELP, detect, faster_rcnn, roi_features
from feat_script.preprocess import resize_frames, resize_short_centre_crop, to_tensor_normalize
from feat_script.sampling import MASN_CLIP_LEN, MASN_STRIDE, masn_frame_indices
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
    det_min_size: int = 800
    det_max_size: int = 1333


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


def _resnet152(path: Path | None) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(global: avgpool vector, C5 map) sharing one ResNet-152."""
    net = load_weights(torchvision.models.resnet152(weights=None), path, "resnet152")
    net.fc = torch.nn.Identity()
    return net.eval(), torch.nn.Sequential(*list(net.children())[:-2]).eval()


class MasnExtractors:
    """The three networks of MASN's features, built once and reused for any number of videos."""

    def __init__(self, settings: FeatureSettings, weights: ExtractorWeights, device: torch.device,
                 amp: str = "off") -> None:
        if not settings.num_clips:
            raise ValueError("FeatureSettings.num_clips must be set (the checkpoint's v_max_length)")
        self.settings, self.device, self.amp = settings, device, amp
        names = RESNET_WEIGHTS["resnet152"]
        resnet_path = weights_file(weights.resnet152, weights.random_init, names,
                                   f"https://download.pytorch.org/models/{names[0]}", "ImageNet ResNet-152")
        detector_path = weights_file(weights.detector, weights.random_init, DETECTOR_FILE, DETECTOR_HELP,
                                     "Faster R-CNN")
        self.clip_args = argparse.Namespace(num_clips=settings.num_clips, clip_len=settings.clip_len,
                                            clip_stride=settings.clip_stride, non_local=False,
                                            weights=weights.i3d, random_init=weights.random_init)
        try:
            self.i3d = build_i3d(self.clip_args)[0].to(device)
        except (ValueError, FileNotFoundError) as err:
            raise AnswerError(str(err).replace("--weights", "the I3D weights")) from None
        res_global, res_c5 = _resnet152(resnet_path)
        self.res_global, self.res_c5 = res_global.to(device), res_c5.to(device)
        detector = faster_rcnn(None, settings.det_min_size, settings.det_max_size)
        self.detector = load_weights(detector, detector_path, "fasterrcnn_resnet50_fpn").eval().to(device)

    @torch.no_grad()
    def __call__(self, video: Path, timer: StageTimer) -> tuple[np.ndarray, ...]:
        """(res_avg, i3d_avg, res_roi, bbox, i3d_roi) of one video, each with ``num_clips`` rows."""
        t, device = self.settings.num_clips, self.device
        try:
            with timer("decode frames + clips"):
                num_frames = count_frames(video)
                if num_frames == 0:
                    raise AnswerError(f"{video}: the video stream has no frames")
                frames = read_frames(video, indices=masn_frame_indices(num_frames, t))
                clips = torch.from_numpy(load_clips(video, self.clip_args, num_frames))
        except DecodeError as err:
            raise AnswerError(str(err)) from None
        crop = to_tensor_normalize(resize_short_centre_crop(frames, 256, 224), IMAGENET_MEAN, IMAGENET_STD)
        square = to_tensor_normalize(resize_frames(frames, RESNET_SIZE, RESNET_SIZE), IMAGENET_MEAN, IMAGENET_STD)
        with timer("Faster R-CNN boxes"), autocast(device, self.amp):
            spatial, counts = detect(self.detector, torch.from_numpy(frames))
        boxes = torch.from_numpy(spatial[..., :4]).to(device)
        counts_t = torch.from_numpy(counts).to(device)
        with timer("ResNet-152 global + C5 RoIAlign"), autocast(device, self.amp):
            res_avg = _chunked(self.res_global, torch.from_numpy(crop), ResNetGlobal.default_batch_size, device)
            res_c5 = _chunked(self.res_c5, torch.from_numpy(square), ObjectsExtractor.default_batch_size, device)
            res_roi = roi_features(res_c5, boxes, counts_t)
        with timer("I3D global + RoIAlign"), autocast(device, self.amp):
            maps = _chunked(self.i3d, clips, I3dExtractor.default_batch_size, device)
            i3d_avg, i3d_roi = maps.mean(dim=(2, 3)), roi_features(maps, boxes, counts_t)
        return (res_avg.cpu().numpy(), i3d_avg.cpu().numpy(), res_roi.cpu().numpy(), spatial,
                i3d_roi.cpu().numpy())


def _chunked(model: torch.nn.Module, rows: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """``model`` over ``rows`` in the extractor CLIs' batch sizes: their numbers, and bounded memory."""
    return torch.cat([model(rows[i:i + size].to(device)).float() for i in range(0, len(rows), size)])


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
