"""The files beside every output: ``<out>.manifest.json`` and ``<out>.failures.jsonl``.

The manifest says how the features were made (extractor, model, weights sha256 or "random-init",
sampling, output shapes and dtypes, library versions, command line) so a feature file can be
traced and compared. The failures list is a log: one JSON line per video that could not be
processed, with the reason; failed videos are retried by the next run.
"""

from __future__ import annotations

import functools
import json
import platform
import sys
import time
from pathlib import Path

from engine.files import sha256_file as engine_sha256_file
from feat_script.stores import append_line, sidecar, write_json_atomic

sha256_file = functools.lru_cache(maxsize=8)(engine_sha256_file)  # the weights are hashed once per run


def library_versions() -> dict[str, str]:
    from feat_script.decode import ffmpeg_version

    versions = {"python": platform.python_version(), "ffmpeg": ffmpeg_version()}
    for name in ("numpy", "torch", "torchvision", "h5py", "PIL", "moviepy"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                continue
        versions[name] = getattr(module, "__version__", "unknown")
    return versions


def write_manifest(out: Path, fields: dict) -> Path:
    """Write ``<out>.manifest.json`` atomically (fields + versions + time + command line)."""
    body = dict(fields)
    body.setdefault("versions", library_versions())
    body["written_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body["command"] = sys.argv
    path = sidecar(out, ".manifest.json")
    write_json_atomic(path, body)
    return path


def read_manifest(out: Path) -> dict:
    return json.loads(sidecar(out, ".manifest.json").read_text())


def record_failure(out: Path, video: Path, video_id: str, reason: str) -> None:
    """Append one JSON line; a single O_APPEND write keeps lines whole across concurrent shards."""
    line = json.dumps(
        {
            "video_id": video_id,
            "path": str(video),
            "reason": reason,
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    append_line(sidecar(out, ".failures.jsonl"), line)


def read_failures(out: Path) -> list[dict]:
    path = sidecar(out, ".failures.jsonl")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
