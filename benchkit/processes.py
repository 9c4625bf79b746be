"""Counting what a code path starts and builds: ffmpeg processes and feature networks.

``Launches`` wraps ``subprocess.Popen`` (which ``subprocess.run`` calls too) for the duration of a
``with`` block and records every command; ``Builds`` wraps ``Extractor.ready`` and counts the
networks it hands out for the first time (a network handed out again is the same object, one freed
and built again counts again). ``scripts/bench_answer.py`` prints both; the tests bound them.
"""
from __future__ import annotations

import subprocess
import weakref
from pathlib import Path

from feat_script.base import Extractor

FFMPEG_NAMES = ("ffmpeg", "ffprobe")


class Launches:
    """The commands of every process started inside the block."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __enter__(self) -> Launches:
        real, commands = subprocess.Popen, self.commands
        self._real = real

        class Recorded(real):
            def __init__(self, args, *rest, **kwargs) -> None:
                commands.append([str(a) for a in ([args] if isinstance(args, (str, Path)) else args)])
                super().__init__(args, *rest, **kwargs)

        subprocess.Popen = Recorded
        return self

    def __exit__(self, *exc) -> None:
        subprocess.Popen = self._real

    @property
    def ffmpeg(self) -> int:
        """Processes of ffmpeg or ffprobe (whatever binary path they came from)."""
        return sum(Path(c[0]).name.startswith(FFMPEG_NAMES) for c in self.commands if c)


class Builds:
    """Feature networks built inside the block (``Extractor.ready`` handing out a new model)."""

    def __init__(self) -> None:
        self.count = 0
        self._seen: weakref.WeakSet = weakref.WeakSet()

    def __enter__(self) -> Builds:
        real, builds = Extractor.ready, self
        self._real = real

        def ready(extractor):
            model, device = real(extractor)
            if model is not None and model not in builds._seen:
                builds._seen.add(model)
                builds.count += 1
            return model, device

        Extractor.ready = ready
        return self

    def __exit__(self, *exc) -> None:
        Extractor.ready = self._real
