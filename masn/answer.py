"""Ask MASN questions about raw videos: ``MasnAnswerer`` (built once) and the one-call ``ask``.

The features are those of ``feat_script``'s MASN recipe (``feat_script.recipes.MASN``), computed in
memory by the recipe's extractors from ONE decode of the video: the frame count, then every frame
the streams use in one ffmpeg run, ``num_clips`` segment-centre frames (default: the checkpoint's
``v_max_length``) and the ``clip_len``-frame clips around them. The centre frames give the
ResNet-152 global vector (``extract_resnet``) and, with Faster R-CNN's 10 best boxes, the RoIAlign
local features on ResNet-152's C5 map (``extract_objects``, appearance); the clips go through I3D
once, whose 7x7 maps give both its averaged global vector (``extract_i3d``) and its RoIAlign local
features with the same boxes (``extract_objects``, motion). The results equal the extractor CLIs'
files for the same video, weights and settings (tests/test_answer.py).
"""
from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

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
from feat_script.base import as_tensors
from feat_script.decode import count_frames, probe, read_frames
from feat_script.extract_i3d import clip_indices, clips_from_frames
from feat_script.extract_objects import RESNET_SIZE, ObjectsConfig, c5_trunk
from feat_script.objects import box_counts
from feat_script.preprocess import resize_frames
from feat_script.recipes import MASN, build
from feat_script.sampling import MASN_CLIP_LEN, MASN_STRIDE, masn_frame_indices
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
    features: str = "computed"  # or "cached" / "disk": where this answer's video features came from

    def to_json(self) -> dict:
        out = {"model": "masn", "task": self.task, "answer": self.answer, "top5": self.top5,
               "question_tokens": self.tokens, "features": self.features,
               "timings_s": {k: round(v, 3) for k, v in self.timings.items()}}
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


STREAMS = ("res_avg", "i3d_avg", "res_roi", "boxes", "i3d_roi")  # the model's order of the video inputs


class MasnFeatures:
    """MASN's feature networks for any number of videos: the recipe's extractors with these settings
    and weights (resolved here, so a missing file is reported before any work). Unless ``one_shot``,
    the networks are built from here on in a thread of their own, in the order they are used, and kept;
    ``one_shot``: each is built on first use and freed after it, one network at a time."""

    def __init__(self, settings: FeatureSettings, weights: ExtractorWeights, device: torch.device,
                 amp: str = "off", one_shot: bool = False) -> None:
        if not settings.num_clips:
            raise ValueError("FeatureSettings.num_clips must be set (the checkpoint's v_max_length)")
        self.settings, self.one_shot = settings, one_shot
        # from a weights file both streams hold the same network; random ones are drawn per extractor, as
        # the CLIs draw them (the detector's draw follows the C5 trunk's)
        self.share_resnet = not weights.random_init
        resnet = resolve("resnet152", weights.resnet152, weights.random_init, "--resnet152-weights")
        i3d = resolve("i3d_r50", weights.i3d, weights.random_init, "--i3d-weights")
        detector = resolve("fasterrcnn", weights.detector, weights.random_init, "--detector-weights")
        # exact: the networks as built, as the CLIs' --exact (the features the checks compare)
        common = {"num_clips": settings.num_clips, "random_init": weights.random_init, "device": str(device),
                  "amp": amp, "exact": True}
        clips = {**common, "clip_len": settings.clip_len, "clip_stride": settings.clip_stride}
        self.resnet = build(MASN.streams["res_avg"], **common, weights=resnet)
        self.objects = build(MASN.streams["res_roi"], **clips, weights=resnet, detector_weights=detector,
                             det_min_size=settings.det_min_size, det_max_size=settings.det_max_size)
        self.i3d = build(MASN.streams["i3d_avg"], **clips, weights=i3d)
        # the motion stream's settings (RoIAlign size, batch); its network is self.i3d's, run once
        self.motion = build(MASN.streams["i3d_roi"], **clips, weights=i3d, boxes={})
        self.pool = None if one_shot else ThreadPoolExecutor(max_workers=1, thread_name_prefix="masn-features")
        self.built = None if one_shot else [self.pool.submit(f) for f in (self.resnet.ready, self._build_objects,
                                                                          self.i3d.ready)]

    def __call__(self, video: VideoFile, timer: StageTimer) -> dict[str, np.ndarray]:
        """The arrays of ``STREAMS`` of one video, each with ``num_clips`` rows.

        Unless ``one_shot``, the networks' thread then runs the two networks whose maps need no boxes,
        I3D over the clips and ResNet-152's C5 trunk over the frames, while this thread runs the global
        ResNet-152 and the detector; only the RoIAlign of those maps waits for the boxes. Each stage's
        time is what this thread spent in it."""
        with timer("decode"):
            frames, clip_frames = self._decode(video.path)
        clips = clips_from_frames(clip_frames, self.i3d.config)
        item = {"frames": frames, "input": resize_frames(frames, RESNET_SIZE, RESNET_SIZE)}
        if self.pool:
            i3d_maps, c5_maps = self.pool.submit(self._i3d_maps, clips), self.pool.submit(self._c5_maps, item["input"])
        with timer("ResNet-152 global"):
            if self.built:
                self.built[0].result()
            trunk = self._trunk()  # taken before a one-shot run frees the global stream's network
            res_avg = self._run(self.resnet, {"frames": self.resnet.prepare(frames)})["resnet152_avgpool"]
        with timer("Faster R-CNN boxes + ResNet-152 C5 RoIAlign"):
            if self.built:
                self.built[1].result()
                model, device = self.objects.ready()
                with torch.inference_mode():
                    spatial, counts = self.objects.boxes(model, as_tensors(item), device)
                    res_roi = self.objects.pool(c5_maps.result(), spatial, counts)
            else:
                self._build_objects(trunk)
                appearance = self._run(self.objects, item)
                res_roi, spatial = appearance["image_features"], appearance["spatial_features"]
        with timer("I3D global + RoIAlign"):
            i3d_avg, i3d_roi = self._motion(i3d_maps.result() if self.pool else self._i3d_maps(clips), spatial)
        return {"res_avg": res_avg, "i3d_avg": i3d_avg, "res_roi": res_roi, "boxes": spatial, "i3d_roi": i3d_roi}

    def _decode(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """The segment-centre frames and the clips' frames, from one ffmpeg run."""
        num_frames = count_frames(path)
        if num_frames == 0:
            raise AnswerError(f"{path}: the video stream has no frames")
        centres = masn_frame_indices(num_frames, self.settings.num_clips)
        clips = clip_indices(self.i3d.config, num_frames).ravel()
        wanted = np.unique(np.concatenate([centres, clips]))
        decoded = read_frames(path, indices=wanted, info=probe(path))
        return tuple(decoded[np.searchsorted(wanted, i)] for i in (centres, clips))

    def _trunk(self) -> torch.nn.Module | None:
        """The global stream's ResNet-152 as the C5 stream's trunk when both come from one weights file."""
        return c5_trunk(self.resnet.ready()[0]) if self.share_resnet else None

    def _build_objects(self, trunk: torch.nn.Module | None = None) -> None:
        """Build the detector and C5 network around ``trunk`` (default: ``_trunk()``); the objects
        extractor holds the shared trunk only while it is built."""
        self.objects.shared_backbone = trunk if trunk is not None else self._trunk()
        try:
            self.objects.ready()
        finally:
            self.objects.shared_backbone = None

    def _run(self, extractor, item: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = extractor.features(item)
        if self.one_shot:
            extractor.release()
        return out

    def _i3d_maps(self, clips: np.ndarray) -> torch.Tensor:
        """I3D's 7x7 maps of the clips, in ``--batch-size`` chunks (run once for both motion streams)."""
        model, device = self.i3d.ready()
        rows, size, maps = torch.from_numpy(clips), self.motion.config.batch_size, []
        with torch.inference_mode():
            for start in range(0, len(rows), size):
                with self.i3d.autocast(device):
                    maps.append(model(self.i3d.inputs(rows[start:start + size].to(device))).float())
        if self.one_shot:
            self.i3d.release()
        return torch.cat(maps)

    def _c5_maps(self, frames: np.ndarray) -> torch.Tensor:
        """ResNet-152's C5 maps of the detector stream's square frames (``ObjectsExtractor.maps``)."""
        model, device = self.objects.ready()
        with torch.inference_mode():
            return self.objects.maps(model, torch.from_numpy(frames), device)

    def _motion(self, maps: torch.Tensor, spatial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The I3D maps averaged (global, ``extract_i3d``'s arithmetic) and RoIAlign-pooled in the boxes
        (local, ``extract_objects --stream motion``'s)."""
        with torch.inference_mode():
            return maps.mean(dim=(2, 3)).cpu().numpy(), self.motion.pool(maps, spatial, box_counts(spatial))


def video_batch(arrays: dict[str, np.ndarray], v_max_length: int) -> list[torch.Tensor]:
    """The six video tensors of a batch of one (``STREAMS``, then the length), zero-padded to
    ``v_max_length`` rows."""
    t = arrays[STREAMS[0]].shape[0]
    out = []
    for a in (arrays[name] for name in STREAMS):
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


class MasnAnswerer(Answerer):
    """One MASN checkpoint and its feature networks, built once: ``features(video)``, then
    ``ask(features_or_video, question, candidates)`` as often as needed (``ask_many`` for several
    questions about one video: ``[{"question", "candidates"}]``)."""

    name = "masn"

    def __init__(self, checkpoint: Path, *, task: str | None = None, settings: FeatureSettings | None = None,
                 weights: ExtractorWeights | None = None, device: torch.device | None = None, amp: str = "off",
                 cache: FeatureCache | None = None, one_shot: bool = False) -> None:
        super().__init__(device=device or torch.device("cpu"), amp=amp, cache=cache, one_shot=one_shot)
        self.checkpoint = Path(checkpoint)
        self.loaded = load_masn(self.checkpoint, task, self.device)
        settings = dataclasses.replace(settings or FeatureSettings())
        settings.num_clips = settings.num_clips or self.loaded.v_max_length
        if settings.num_clips > self.loaded.v_max_length:
            raise AnswerError(f"--num-clips {settings.num_clips} is more than the checkpoint's v_max_length "
                              f"{self.loaded.v_max_length}")
        self.settings, self.weights = settings, weights or ExtractorWeights()
        self.networks = MasnFeatures(settings, self.weights, self.device, amp, one_shot)

    @property
    def task(self) -> str:
        return self.loaded.task

    def recipe_key(self) -> str:
        return repr((self.settings, self.weights, str(self.device), self.amp))

    def compute(self, video: VideoFile, timer: StageTimer) -> dict[str, np.ndarray]:
        return self.networks(video, timer)

    question_fields = ("question", "candidates")

    def check(self, question: str, candidates: list[str] | None = None) -> None:
        encode(self.loaded, question, candidates, str(self.checkpoint))

    def ask(self, features_or_video: str | Path | VideoFile | VideoFeatures, question: str,
            candidates: list[str] | None = None, timer: StageTimer | None = None) -> MasnAnswer:
        """The answer to one question (checked against the vocabulary before any feature is computed)."""
        timer = timer or StageTimer()
        tokens, text = encode(self.loaded, question, candidates, str(self.checkpoint))
        features = self.as_features(features_or_video, timer)
        with timer("MASN"):
            result = answer(self.loaded, video_batch(features.arrays, self.loaded.v_max_length), text, tokens,
                            candidates, self.amp)
        result.boxes, result.timings, result.features = features.arrays["boxes"], timer.seconds, features.source
        return result


def ask(video: Path, question: str, checkpoint: Path, *, task: str | None = None,
        candidates: list[str] | None = None, settings: FeatureSettings | None = None,
        weights: ExtractorWeights | None = None, device: torch.device | None = None, amp: str = "off",
        verbose: bool = False) -> MasnAnswer:
    """One question, start to end: a one-shot ``MasnAnswerer`` (each network freed after its use)."""
    timer = StageTimer(verbose)
    with timer("load checkpoint"):
        answerer = MasnAnswerer(checkpoint, task=task, settings=settings, weights=weights, device=device,
                                amp=amp, cache=FeatureCache(0), one_shot=True)
    return answerer.ask(video, question, candidates, timer)
