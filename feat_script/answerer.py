"""The shared base of the question answerers (``masn.answer.MasnAnswerer``, ``avst.answer.AvstAnswerer``).

An answerer is built once (QA model, feature networks, device, AMP), then asked any number of
questions about any number of videos, as mmaction2's ``init_recognizer`` / ``inference_recognizer``:
``features(video)`` decodes a video once and runs each feature network once, and keeps the result
under the file's SHA-256 (an LRU of a few videos in memory, optionally ``.npz`` files in a folder),
so a second question about the video costs the QA model's forward only. Here also live the pieces
both answerers share: the vocabulary check (a word outside the vocabulary fixed at training would
silently become padding or ``UNK``, so it is an error naming the closest known words), top-k,
the stage timer behind ``--verbose`` and the web page's stages, and the front ends' flags.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import hashlib
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from engine.cli import not_below, positive_int
from engine.errors import UserError
from feat_script.decode import DecodeError


class AnswerError(UserError, ValueError):
    """A question, video, checkpoint or weights file that cannot be answered from; the message says why."""


def unknown_words(tokens: Sequence[str], known: Iterable[str], source: str) -> None:
    """Raise AnswerError naming every token of ``tokens`` not in ``known``, with the closest known words."""
    vocab = set(known)
    missing = list(dict.fromkeys(t for t in tokens if t not in vocab))
    if not missing:
        return
    parts = []
    for word in missing:
        close = difflib.get_close_matches(word, sorted(vocab), n=5, cutoff=0.5)
        parts.append(f"{word!r} (closest known: {', '.join(close) if close else 'none'})")
    raise AnswerError(f"question word(s) outside the vocabulary of {source}: {'; '.join(parts)}")


def top_k(probs: torch.Tensor, labels: Sequence[str], k: int = 5) -> list[dict]:
    """``[{"answer", "prob"}]`` for the ``k`` most probable classes of a 1-D probability vector."""
    values, index = probs.float().topk(min(k, probs.numel()))
    return [{"answer": labels[i], "prob": round(float(v), 6)} for v, i in zip(values.tolist(), index.tolist())]


class StageTimer:
    """Wall-clock seconds per named stage, in the order they ran."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        if self.verbose:
            print(f"[{self.seconds[name]:7.2f} s] {name}", flush=True)


@dataclasses.dataclass(frozen=True)
class VideoFile:
    """A video as the answerers key it: the file and the SHA-256 of its bytes."""

    path: Path
    sha256: str

    @classmethod
    def of(cls, video: str | Path | VideoFile) -> VideoFile:
        if isinstance(video, VideoFile):
            return video
        path = Path(video)
        if not path.is_file():
            raise AnswerError(f"{path}: no such file")
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return cls(path, digest.hexdigest())


@dataclasses.dataclass
class VideoFeatures:
    """One video's features as one answerer's model takes them (``arrays``, keyed by stream), and
    where they came from this time: ``computed``, ``cached`` (memory) or ``disk``."""

    video: VideoFile
    arrays: dict[str, np.ndarray]
    source: str = "computed"


class FeatureCache:
    """The last ``size`` videos' features in memory, and every video's in ``folder`` when given
    (``<answerer>-<sha256>-<recipe digest>.npz``, written atomically, read without pickle)."""

    def __init__(self, size: int = 4, folder: Path | None = None) -> None:
        if size < 0:
            raise ValueError("FeatureCache: size must be >= 0")
        self.size, self.folder = size, folder
        self.memory: OrderedDict[tuple[str, str], dict[str, np.ndarray]] = OrderedDict()

    def _file(self, key: tuple[str, str]) -> Path:
        name, digest = key[1].split(":", 1)
        return self.folder / f"{name}-{key[0]}-{hashlib.sha256(digest.encode()).hexdigest()[:16]}.npz"

    def get(self, key: tuple[str, str]) -> tuple[dict[str, np.ndarray] | None, str]:
        if key in self.memory:
            self.memory.move_to_end(key)
            return self.memory[key], "cached"
        if self.folder is not None and self._file(key).is_file():
            with np.load(self._file(key), allow_pickle=False) as stored:
                arrays = {k: stored[k] for k in stored.files}
            self._remember(key, arrays)
            return arrays, "disk"
        return None, ""

    def put(self, key: tuple[str, str], arrays: dict[str, np.ndarray]) -> None:
        self._remember(key, arrays)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".npz.tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, self._file(key))

    def _remember(self, key: tuple[str, str], arrays: dict[str, np.ndarray]) -> None:
        if self.size == 0:
            return
        self.memory[key] = arrays
        self.memory.move_to_end(key)
        while len(self.memory) > self.size:
            self.memory.popitem(last=False)


class Answerer:
    """Build once, then ``features(video)`` and ``ask(features_or_video, question, ...)`` as often as
    needed. Subclasses say what decides their features besides the file (``recipe_key``), how to
    compute them (``compute``) and how to answer (``ask``). ``one_shot``: free each feature network
    right after its use (memory holds one network at a time; the next video builds them again)."""

    name = "answerer"

    def __init__(self, *, device: torch.device, amp: str = "off", cache: FeatureCache | None = None,
                 one_shot: bool = False) -> None:
        self.device, self.amp, self.one_shot = device, amp, one_shot
        self.cache = FeatureCache() if cache is None else cache

    def recipe_key(self) -> str:
        """Everything besides the file's bytes that decides the features (the cache key's second half)."""
        raise NotImplementedError

    def compute(self, video: VideoFile, timer: StageTimer) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def features(self, video: str | Path | VideoFile, timer: StageTimer | None = None) -> VideoFeatures:
        """The features of ``video``: from the cache, else decoded and computed (and cached)."""
        video = VideoFile.of(video)
        timer = timer or StageTimer()
        key = (video.sha256, f"{self.name}:{self.recipe_key()}")
        arrays, source = self.cache.get(key)
        if arrays is None:
            try:
                arrays = self.compute(video, timer)
            except DecodeError as err:
                raise AnswerError(str(err)) from None
            self.cache.put(key, arrays)
            source = "computed"
        return VideoFeatures(video, arrays, source)

    def as_features(self, features_or_video: str | Path | VideoFile | VideoFeatures,
                    timer: StageTimer) -> VideoFeatures:
        if isinstance(features_or_video, VideoFeatures):
            return features_or_video
        return self.features(features_or_video, timer)

    question_fields: tuple[str, ...] = ("question",)  # the keywords of ``ask`` a question dict may hold

    def check(self, question: str, **fields) -> None:
        """Raise AnswerError for a question the model cannot take (before any video is decoded)."""
        raise NotImplementedError

    def ask(self, features_or_video, question: str, **fields):
        raise NotImplementedError

    def ask_many(self, video: str | Path | VideoFile, questions: list[dict], verbose: bool = False) -> list:
        """Answers to several questions (dicts of ``question_fields``) about one video: every question
        checked first, then the features computed (or found) once; the later answers report them cached."""
        asked = [{k: q.get(k) for k in self.question_fields} for q in questions]
        for q in asked:
            self.check(**q)
        timer = StageTimer(verbose)
        features = self.features(video, timer)
        reused = dataclasses.replace(features, source="cached")
        return [self.ask(reused if i else features, **q, timer=StageTimer(verbose) if i else timer)
                for i, q in enumerate(asked)]


RANDOM_NOTE = "NOTE: --random-init: the feature extractors have RANDOM weights; answers mean nothing."


def add_extractor_args(p: argparse.ArgumentParser) -> None:
    """The flags every "ask a video" front end shares (scripts/answer.py, the web demo): device, AMP,
    extractor weights and MASN's sampling, with the same names and defaults everywhere."""
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off")
    p.add_argument("--random-init", action="store_true", help="random extractor weights (tests and demo only)")
    p.add_argument("--feature-cache", type=Path, default=None,
                   help="also keep every video's features as .npz files in this folder (e.g. under the run "
                        "folder); a later run answers from them without decoding")
    w = p.add_argument_group("extractor weights (nothing is downloaded; torchvision's cache is looked at)")
    w.add_argument("--resnet18-weights", type=Path, default=None, help="AVST: resnet18-5c106cde.pth")
    w.add_argument("--vggish-weights", type=Path, default=None, help="AVST: converted vggish.pt")
    w.add_argument("--resnet152-weights", type=Path, default=None, help="MASN: resnet152-394f9c45.pth")
    w.add_argument("--i3d-weights", type=Path, default=None, help="MASN: i3d_r50_kinetics.pth")
    w.add_argument("--detector-weights", type=Path, default=None,
                   help="MASN: fasterrcnn_resnet50_fpn_coco-258fb6c6.pth")
    s = p.add_argument_group("MASN sampling (defaults: feat_script's recipe)")
    s.add_argument("--num-clips", type=positive_int, default=None, help="default: the checkpoint's v_max_length")
    s.add_argument("--clip-len", type=positive_int, default=16)
    s.add_argument("--clip-stride", type=positive_int, default=1)
    s.add_argument("--det-min-size", type=positive_int, default=800, help="detector input, shorter side")
    s.add_argument("--det-max-size", type=positive_int, default=1333)
    not_below(p, "--det-min-size", "--det-max-size", "the shorter side could never reach --det-min-size")
