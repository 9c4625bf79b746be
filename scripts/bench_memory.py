"""Peak memory of every extractor and both answerers on long inputs: each run in a child process of its own.

    PYTHONPATH=. python scripts/bench_memory.py [--work DIR] [--only NAME ...] [--json FILE]
    PYTHONPATH=. python scripts/bench_memory.py --quick        # seconds-long inputs: a smoke test

Inputs are generated in ``--work`` (a temporary folder by default; nothing is committed) with
``feat_script.synthetic_video``: a 1-hour 320x240 25-fps video with sound for the visual extractors and
both answerers, and a 4-hour track (44.1 kHz stereo AAC under a 64x48 1-fps picture) for the audio
extractors. Every extractor of ``feat_script.registry`` runs as ``python -m feat_script NAME --random-init
--device cpu --workers 0``; the answerers as ``scripts/answer.py --model avst|masn --random-init --device
cpu`` on the tiny checkpoints of ``benchkit.tiny_checkpoints``. A run's peak is the largest resident set
of its process tree (``os.wait4``'s ``ru_maxrss``: the Python process and the ffmpeg it starts, each
counted alone; Linux counts the starting process's peak too, so this one imports nothing heavy and
prints its own). The table gives seconds, peak MB and whether it is within ``--limit-mb`` (2048); the exit
status is 1 when a run failed or went over.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AUDIO_EXTRACTORS = ("audio", "vggish")
EXTRA_FLAGS = {"objects": ["--stream", "appearance"]}  # the motion stream needs appearance's boxes
QUESTIONS = {"avst": ["--question", "Is the <Object> in the video always playing?", "--values", "violin"],
             "masn": ["--question", "what colour is the car?"]}
FULL = {"video_seconds": 3600, "audio_seconds": 4 * 3600}
QUICK = {"video_seconds": 3, "audio_seconds": 4}


@dataclass
class Result:
    name: str
    input: str
    seconds: float
    peak_mb: float
    status: int
    tail: str = ""


def prepare(work: Path, video_seconds: float, audio_seconds: float) -> dict:
    """Run in a child process (``--prepare``), so that this process stays small: a child's peak counts
    the memory of the process it was started from. Writes the long video, the long audio track (each in
    a folder of its own: extractors take folders) and the tiny checkpoints; returns their paths and the
    extractor names."""
    from benchkit.tiny_checkpoints import write_checkpoints
    from feat_script.registry import EXTRACTORS
    from feat_script.synthetic_video import make_pattern_video

    inputs = {"video": work / "video" / "long_video.mp4", "audio": work / "audio" / "long_audio.mp4"}
    for path in inputs.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    if not inputs["video"].exists():
        make_pattern_video(inputs["video"], size="320x240", rate=25, seconds=video_seconds, pattern="testsrc2")
    if not inputs["audio"].exists():
        make_pattern_video(inputs["audio"], size="64x48", rate=1, seconds=audio_seconds)
    checkpoints = write_checkpoints(work)
    return {"inputs": {k: str(v) for k, v in inputs.items()},
            "checkpoints": {k: str(v) for k, v in checkpoints.items()}, "extractors": list(EXTRACTORS)}


def prepared(work: Path, sizes: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--prepare", str(work), "--sizes", json.dumps(sizes)],
                          capture_output=True, text=True, env=_env(), cwd=ROOT)
    if proc.returncode:
        raise SystemExit(f"error: preparing the inputs failed: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def commands(work: Path, ready: dict, names: list[str] | None) -> list[tuple[str, str, list[str]]]:
    """(name, input kind, argv) of every run (extractors first), or of ``names`` in their order."""
    inputs = {k: Path(v) for k, v in ready["inputs"].items()}
    stamp = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    runs = []
    for name in ready["extractors"]:
        kind = "audio" if name in AUDIO_EXTRACTORS else "video"
        out = work / "out" / f"{name}-{stamp}" / name  # a fresh folder: a resumed run would skip the work
        argv = [sys.executable, "-m", "feat_script", name, "--videos", str(inputs[kind].parent), "--out",
                str(out), "--random-init", "--device", "cpu", "--workers", "0", "--quiet",
                *EXTRA_FLAGS.get(name, [])]
        runs.append((name, kind, argv))
    checkpoints = ready["checkpoints"]
    for model, question in QUESTIONS.items():
        runs.append((f"answer.py --model {model}", "video",
                     [sys.executable, str(ROOT / "scripts/answer.py"), "--model", model, "--checkpoint",
                      str(checkpoints[model]), "--video", str(inputs["video"]), *question, "--random-init",
                      "--device", "cpu", "--json"]))
    if names is None:
        return runs
    by_name = {run[0].split()[-1]: run for run in runs}
    unknown = sorted(set(names) - set(by_name))
    if unknown:
        raise SystemExit(f"error: --only {' '.join(unknown)}: no such run; choose from {', '.join(by_name)}")
    return [by_name[name] for name in names]


def measure(name: str, kind: str, argv: list[str], timeout: float) -> Result:
    """Run ``argv`` in a child process; its peak resident set from ``os.wait4`` (KiB on Linux)."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        tail = log.read().decode(errors="replace")[-600:]
    return Result(name, kind, round(time.monotonic() - start, 1), round(usage.ru_maxrss / 1024, 1),
                  proc.returncode, tail if proc.returncode else "")


def _own_peak_mb() -> float:
    """The floor under every child's figure (a child's peak counts the process it was started from)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(results: list[Result], limit_mb: float) -> str:
    lines = [f"{'run':26s} {'input':6s} {'seconds':>8s} {'peak MB':>8s}  verdict"]
    for r in results:
        verdict = f"exit {r.status}" if r.status else ("ok" if r.peak_mb <= limit_mb else f"over {limit_mb:.0f} MB")
        lines.append(f"{r.name:26s} {r.input:6s} {r.seconds:8.1f} {r.peak_mb:8.1f}  {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3-s video and 4-s audio track: a smoke test of every run")
    p.add_argument("--work", type=Path, default=None, help="folder for the inputs and outputs (default: temporary)")
    p.add_argument("--only", nargs="+", default=None,
                   help="these runs only, in this order: extractor names, and avst / masn for the answerers")
    p.add_argument("--limit-mb", type=float, default=2048, help="the peak each run must stay within")
    p.add_argument("--timeout", type=float, default=None, help="seconds per run (default: 600 quick, 6 h full)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--prepare", type=Path, default=None, help=argparse.SUPPRESS)  # the child that writes the inputs
    p.add_argument("--sizes", type=json.loads, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.prepare:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(prepare(args.prepare, **args.sizes)))
        return 0
    sizes = QUICK if args.quick else FULL
    timeout = args.timeout or (600 if args.quick else 6 * 3600)
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        work = args.work or Path(tmp)
        ready = prepared(work, sizes)
        print(f"inputs: {sizes['video_seconds']} s video {ready['inputs']['video']}, {sizes['audio_seconds']} s "
              f"audio track {ready['inputs']['audio']}; this process's own peak {_own_peak_mb():.0f} MB", flush=True)
        results = []
        for name, kind, run_argv in commands(work, ready, args.only):
            results.append(measure(name, kind, run_argv, timeout))
            print(table(results[-1:], args.limit_mb).splitlines()[1], flush=True)
            if results[-1].tail:
                print(results[-1].tail, file=sys.stderr, flush=True)
    print(table(results, args.limit_mb))
    if args.json:
        args.json.write_text(json.dumps({"sizes": sizes, "limit_mb": args.limit_mb,
                                         "results": [asdict(r) for r in results]}, indent=1))
    return int(any(r.status or r.peak_mb > args.limit_mb for r in results))


if __name__ == "__main__":
    sys.exit(main())
