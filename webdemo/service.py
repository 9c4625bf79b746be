"""The model side of the web demo: checkpoints, videos, cached features and the question queue.

One worker thread answers the questions in turn with ``avst.answer.ask`` / ``masn.answer.ask`` (one
process on one device: running two at once would only make both slower); the HTTP side registers
videos and reads the jobs' states. A video's features are cached under the file's SHA-256 and the
feature recipe, so a second question about the same video only runs the model. Every message a user
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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import torch

from answering import StageTimer
from avst.answer import ask as avst_ask
from avst.answer import load_avst, video_features, write_heatmaps
from engine.errors import UserError, short
from feat_script.decode import DecodeError, VideoInfo, probe
from masn.answer import N_CANDIDATES, ExtractorWeights, FeatureSettings, MasnExtractors, load_masn
from masn.answer import ask as masn_ask
from webdemo.questions import templates_for

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".gif", ".mov", ".avi", ".m4v")
CACHED_VIDEOS = 16  # feature sets kept in memory (AVST: ~4 MB each)
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
    settings: FeatureSettings | None = None  # MASN: the sampling its features use

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
    """A StageTimer that also shows the job which stage runs now, and adds to ``ask``'s timings."""

    def __init__(self, job: Job, seconds: dict[str, float]) -> None:
        super().__init__()
        self.job, self.seconds = job, seconds

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.job.stage = name
        with super().__call__(name):
            yield
        self.job.stages.append((name, self.seconds[name]))


class CachedFeatures:
    """What ``ask`` calls for a video's features: the cache first, ``compute`` on a miss.

    It has ``settings`` so that ``masn.answer.ask`` accepts it as its ``extractors``."""

    def __init__(self, cache: OrderedDict, key: tuple, job: Job, compute: Callable[[Path, StageTimer], tuple],
                 settings: FeatureSettings | None = None) -> None:
        self.cache, self.key, self.job, self.compute, self.settings = cache, key, job, compute, settings

    def __call__(self, video: Path, timer: StageTimer) -> tuple:
        if self.key in self.cache:
            self.cache.move_to_end(self.key)
            self.job.features = "cached"
        else:
            self.cache[self.key] = self.compute(video, ProgressTimer(self.job, timer.seconds))
            self.job.features = "computed"
            while len(self.cache) > CACHED_VIDEOS:
                self.cache.popitem(last=False)
        self.job.stage = f"{self.job.model.label}: answering"
        return self.cache[self.key]


def load_models(avst: Path | None, masn: list[Path], recipe: Recipe, vocab_json: Path | None) -> list[ModelEntry]:
    """The page's models; a checkpoint that cannot be read becomes an entry with its error message."""
    entries = []
    if avst is not None:
        entry = ModelEntry("avst", "avst", avst, "AVST (MUSIC-AVQA)")
        try:
            _, vocab = load_avst(avst, torch.device("cpu"), vocab_json)
            entry.templates = templates_for(vocab.words)
        except UserError as err:
            entry.error = short(str(err))
        entries.append(entry)
    for i, path in enumerate(masn):
        entry = ModelEntry(f"masn{i}", "masn", path, f"MASN ({path.name})")
        try:
            loaded = load_masn(path, None, torch.device("cpu"))
            entry.task, entry.label = loaded.task, f"MASN {loaded.task} (TGIF-QA)"
            entry.settings = replace(recipe.settings, num_clips=recipe.settings.num_clips or loaded.v_max_length)
        except UserError as err:
            entry.error = short(str(err))
        entries.append(entry)
    return entries


class Service:
    def __init__(self, models: list[ModelEntry], recipe: Recipe, limits: Limits, device: torch.device,
                 demo_videos: Path | None = None, vocab_json: Path | None = None) -> None:
        self.models = {m.key: m for m in models}
        self.recipe, self.limits, self.device, self.vocab_json = recipe, limits, device, vocab_json
        self.demo_videos = demo_videos
        self.work = Path(tempfile.mkdtemp(prefix="avqa-web-"))
        self.videos: dict[str, Video] = {}
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.features: OrderedDict = OrderedDict()
        self.extractors: dict[tuple, MasnExtractors] = {}
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
        try:
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
        r, req, model, video = self.recipe, job.request, job.model, job.video
        job.stage = "load checkpoint"
        if model.kind == "avst":
            def compute(path: Path, timer: StageTimer) -> tuple:
                return video_features(path, resnet_weights=r.resnet18, vggish_weights=r.vggish,
                                      random_init=r.random_init, device=self.device, amp=r.amp, timer=timer)

            key = (video.id, "avst", str(r.resnet18), str(r.vggish), r.random_init, str(self.device), r.amp)
            result = avst_ask(video.path, req["question"], [str(v) for v in req.get("values") or []],
                              model.checkpoint, device=self.device, amp=r.amp, vocab_json=self.vocab_json,
                              features=CachedFeatures(self.features, key, job, compute))
            out = result.to_json()
            out["images"] = [p.name for p in write_heatmaps(result, self.work / "jobs" / job.id)]
            return out
        settings = model.settings

        def compute_masn(path: Path, timer: StageTimer) -> tuple:
            built = tuple(sorted(asdict(settings).items()))
            if built not in self.extractors:
                with timer("build extractors"):
                    self.extractors[built] = MasnExtractors(settings, r.masn_weights, self.device, r.amp)
            return self.extractors[built](path, timer)

        key = (video.id, "masn", repr(settings), repr(r.masn_weights), str(self.device), r.amp)
        candidates = [str(c).strip() for c in req.get("candidates") or [] if str(c).strip()] or None
        return masn_ask(video.path, req["question"], model.checkpoint, task=model.task, candidates=candidates,
                        settings=replace(settings), device=self.device, amp=r.amp,
                        extractors=CachedFeatures(self.features, key, job, compute_masn, settings)).to_json()


def _named(message: str, path: Path, name: str) -> str:
    """The message with the stored copy's path replaced by the name the user gave the file."""
    return message.replace(str(path), name)


def _drain(stream: BinaryIO, length: int) -> None:
    while length > 0 and (chunk := stream.read(min(CHUNK, length))):
        length -= len(chunk)
