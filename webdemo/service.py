"""The model side of the web demo: checkpoints, videos, cached features and the question queue.

One answerer per model (``avst.answer.AvstAnswerer``, ``masn.answer.MasnAnswerer``) is built when the
service starts and kept for its lifetime; one worker thread answers the questions in turn with them
(one process on one device: running two at once would only make both slower); the HTTP side registers
videos and reads the jobs' states. Each answerer caches a video's features under the file's SHA-256
and its feature recipe, so a second question about the same video only runs the model; an upload is
probed (and its frames counted) once, in the same ffmpeg run, and the answerers reuse those facts.
Every message a user
can cause is a ``UserError`` whose text the page shows; anything else is a bug, whose traceback goes
to the server's terminal and never to the page.
"""
from __future__ import annotations

import contextlib
import hashlib
import queue
import shutil
import tempfile
import threading
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

from avst.answer import AvstAnswerer, write_heatmaps
from engine.errors import UserError, short
from feat_script.answerer import Answerer, FeatureCache, StageTimer, VideoFile
from feat_script.decode import DecodeError, VideoInfo, count_frames, probe
from masn.answer import N_CANDIDATES, ExtractorWeights, FeatureSettings, MasnAnswerer
from webdemo.questions import templates_for

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".gif", ".mov", ".avi", ".m4v")
CACHED_VIDEOS = 16  # feature sets kept in memory per model (AVST: ~4 MB each)
KEPT_JOBS = 100  # finished jobs whose results and images stay available
CHUNK = 1 << 20


class WebError(UserError, ValueError):
    """A request the demo cannot serve (unknown video or model, a file over the limits, not a video)."""


@dataclass(frozen=True)
class Recipe:
    """Everything besides the file that decides a video's features (the cache key's second half)."""

    resnet18: Path | None = None
    vggish: Path | None = None
    masn_weights: ExtractorWeights = field(default_factory=ExtractorWeights)
    settings: FeatureSettings = field(default_factory=FeatureSettings)  # num_clips None: each checkpoint's
    random_init: bool = False
    amp: str = "off"
    feature_cache: Path | None = None  # also keep the features as .npz files here


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_seconds: float

    def describe(self) -> str:
        return f"at most {self.max_bytes / 2**20:g} MB and {self.max_seconds:g} s"


@dataclass
class ModelEntry:
    """One checkpoint the page offers: AVST, or MASN for its task. ``error``: why it cannot answer."""

    key: str
    kind: str  # "avst" | "masn"
    checkpoint: Path
    label: str
    error: str | None = None
    task: str | None = None
    templates: list[dict] = field(default_factory=list)  # AVST
    answerer: Answerer | None = field(default=None, repr=False)  # built once, kept for the service's life

    def public(self) -> dict:
        return {"key": self.key, "kind": self.kind, "label": self.label, "checkpoint": str(self.checkpoint),
                "error": self.error, "task": self.task, "templates": self.templates,
                "candidates": N_CANDIDATES if self.task in ("Action", "Trans") else 0}


@dataclass
class Video:
    id: str
    name: str
    path: Path
    info: VideoInfo

    def public(self) -> dict:
        i = self.info
        return {"id": self.id, "name": self.name, "seconds": round(i.duration, 2), "width": i.width,
                "height": i.height, "has_audio": i.has_audio}


@dataclass
class Job:
    id: str
    video: Video
    model: ModelEntry
    request: dict
    state: str = "queued"  # queued | running | done | error
    stage: str = ""
    stages: list[tuple[str, float]] = field(default_factory=list)
    features: str = ""  # "computed" | "cached"
    result: dict | None = None
    error: str | None = None

    def public(self) -> dict:
        return {"id": self.id, "state": self.state, "stage": self.stage, "features": self.features,
                "stages": [{"name": n, "seconds": round(s, 3)} for n, s in list(self.stages)],
                "result": self.result, "error": self.error}


class ProgressTimer(StageTimer):
    """A StageTimer that also shows the job which stage runs now."""

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.job.stage = name
        with super().__call__(name):
            yield
        self.job.stages.append((name, self.seconds[name]))


def load_models(avst: Path | None, masn: list[Path], recipe: Recipe, vocab_json: Path | None,
                device: torch.device) -> list[ModelEntry]:
    """The page's models, each with its answerer; a checkpoint that cannot be read becomes an entry with
    its error message."""
    entries = []

    def cache() -> FeatureCache:
        return FeatureCache(CACHED_VIDEOS, recipe.feature_cache)

    if avst is not None:
        entry = ModelEntry("avst", "avst", avst, "AVST (MUSIC-AVQA)")
        try:
            entry.answerer = AvstAnswerer(avst, resnet_weights=recipe.resnet18, vggish_weights=recipe.vggish,
                                          random_init=recipe.random_init, device=device, amp=recipe.amp,
                                          vocab_json=vocab_json, cache=cache())
            entry.templates = templates_for(entry.answerer.vocab.words)
        except UserError as err:
            entry.error = short(str(err))
        entries.append(entry)
    for i, path in enumerate(masn):
        entry = ModelEntry(f"masn{i}", "masn", path, f"MASN ({path.name})")
        try:
            entry.answerer = MasnAnswerer(path, settings=recipe.settings, weights=recipe.masn_weights,
                                          device=device, amp=recipe.amp, cache=cache())
            entry.task, entry.label = entry.answerer.task, f"MASN {entry.answerer.task} (TGIF-QA)"
        except UserError as err:
            entry.error = short(str(err))
        entries.append(entry)
    return entries


class Service:
    def __init__(self, models: list[ModelEntry], recipe: Recipe, limits: Limits, device: torch.device,
                 demo_videos: Path | None = None) -> None:
        self.models = {m.key: m for m in models}
        self.recipe, self.limits, self.device = recipe, limits, device
        self.demo_videos = demo_videos
        self.work = Path(tempfile.mkdtemp(prefix="avqa-web-"))
        self.videos: dict[str, Video] = {}
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.lock = threading.Lock()
        self.worker = threading.Thread(target=self._work, name="answer-worker", daemon=True)
        self.worker.start()

    def close(self) -> None:
        self.queue.put(None)
        self.worker.join(timeout=30)
        shutil.rmtree(self.work, ignore_errors=True)

    def info(self) -> dict:
        return {"models": [m.public() for m in self.models.values()], "demo_videos": self.demo_names(),
                "random_init": self.recipe.random_init, "limits": {"max_bytes": self.limits.max_bytes,
                "max_seconds": self.limits.max_seconds, "text": self.limits.describe()}, "device": str(self.device)}

    # videos -----------------------------------------------------------------------------------------

    def demo_names(self) -> list[str]:
        if self.demo_videos is None or not self.demo_videos.is_dir():
            return []
        return sorted(p.name for p in self.demo_videos.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)

    def pick_demo(self, name: str) -> Video:
        if name not in self.demo_names():
            raise WebError(f"{name}: not one of the demo videos ({', '.join(self.demo_names()) or 'none'})")
        with open(self.demo_videos / name, "rb") as f:
            return self.add_upload(name, f, (self.demo_videos / name).stat().st_size)

    def add_upload(self, name: str, stream: BinaryIO, length: int) -> Video:
        """Store ``length`` bytes under their SHA-256, check they are a video within the limits."""
        name = Path(name).name or "upload"
        if length > self.limits.max_bytes:
            _drain(stream, length)
            raise WebError(f"{name}: {length / 2**20:.1f} MB is over this demo's limit ({self.limits.describe()};"
                           " start it with a larger --max-mb)")
        suffix = Path(name).suffix.lower() if Path(name).suffix.lower() in VIDEO_SUFFIXES else ""
        digest, tmp = hashlib.sha256(), self.work / f"upload-{uuid.uuid4().hex}{suffix}"
        with open(tmp, "wb") as out:
            left = length
            while left > 0:
                chunk = stream.read(min(CHUNK, left))
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
                left -= len(chunk)
        if left:
            tmp.unlink()
            raise WebError(f"{name}: the upload stopped after {length - left} of {length} bytes; try again")
        vid = digest.hexdigest()
        path = self.work / "videos" / f"{vid}{suffix}"
        path.parent.mkdir(exist_ok=True)
        tmp.replace(path)
        try:  # one ffmpeg run: the facts and the frame count, which the answerers then reuse
            count_frames(path)
            info = probe(path)
        except DecodeError as err:
            path.unlink()
            raise WebError(f"{_named(str(err), path, name)}; upload a video file (mp4, webm, mkv or GIF)") from None
        if info.duration > self.limits.max_seconds:
            path.unlink()
            raise WebError(f"{name}: {info.duration:.1f} s is over this demo's limit ({self.limits.describe()}; "
                           "start it with a larger --max-seconds, or cut the video)")
        video = Video(vid, name, path, info)
        with self.lock:
            self.videos[vid] = video
        return video

    # questions --------------------------------------------------------------------------------------

    def submit(self, request: dict) -> Job:
        """Queue a question: ``{"video", "model", "question", "values", "candidates"}``."""
        video = self.videos.get(str(request.get("video")))
        if video is None:
            raise WebError("no video yet (or the server restarted): upload one or pick a demo video")
        model = self.models.get(str(request.get("model")))
        if model is None:
            raise WebError(f"unknown model {request.get('model')!r}; choose one of {', '.join(self.models)}")
        if model.error:
            raise WebError(model.error)
        if not str(request.get("question", "")).strip():
            raise WebError("the question is empty: type one, or pick a template")
        job = Job(uuid.uuid4().hex[:12], video, model, request)
        with self.lock:
            self.jobs[job.id] = job
            while len(self.jobs) > KEPT_JOBS:
                old, _ = self.jobs.popitem(last=False)
                shutil.rmtree(self.work / "jobs" / old, ignore_errors=True)
        self.queue.put(job)
        return job

    def job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise WebError(f"no question {job_id!r} (the server keeps the last {KEPT_JOBS})")
        return job

    def image(self, job_id: str, name: str) -> Path:
        path = self.work / "jobs" / self.job(job_id).id / name
        if not (name.endswith(".png") and "/" not in name and path.is_file()):
            raise WebError(f"no image {name!r} for question {job_id}")
        return path

    def _work(self) -> None:
        while (job := self.queue.get()) is not None:
            job.state = "running"
            try:
                job.result = self._answer(job)
                job.state = "done"
            except UserError as err:
                job.error, job.state = short(_named(str(err), job.video.path, job.video.name)), "error"
            except Exception as err:  # noqa: BLE001 - a bug: traceback to the terminal, one line to the page
                traceback.print_exc()
                job.error = f"internal error ({type(err).__name__}); the traceback is in the server's terminal"
                job.state = "error"
            job.stage = ""

    def _answer(self, job: Job) -> dict:
        req, model, timer = job.request, job.model, ProgressTimer(job)
        video = VideoFile(job.video.path, job.video.id)
        if model.kind == "avst":
            result = model.answerer.ask(video, req["question"], [str(v) for v in req.get("values") or []], timer)
            out = result.to_json()
            out["images"] = [p.name for p in write_heatmaps(result, self.work / "jobs" / job.id)]
        else:
            candidates = [str(c).strip() for c in req.get("candidates") or [] if str(c).strip()] or None
            out = model.answerer.ask(video, req["question"], candidates, timer).to_json()
        job.features = "computed" if out["features"] == "computed" else "cached"
        return out


def _named(message: str, path: Path, name: str) -> str:
    """The message with the stored copy's path replaced by the name the user gave the file."""
    return message.replace(str(path), name)


def _drain(stream: BinaryIO, length: int) -> None:
    while length > 0 and (chunk := stream.read(min(CHUNK, length))):
        length -= len(chunk)
