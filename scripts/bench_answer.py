"""What answering costs, before and after: ffmpeg processes, networks built, seconds, peak memory.

    git worktree add --detach /tmp/old <commit before the answerers>   # the code to compare with
    PYTHONPATH=. python scripts/bench_answer.py --before /tmp/old [--out /tmp/bench_answer]

For each paper and each video (the demo-size video, 3 s 160x120 as ``make demo-video`` makes them,
and a 60-s 640x480 one) every route runs in a fresh process of its own, on this machine, in this run:

- ``before``: the checkout given by ``--before`` (its packages first on PYTHONPATH); its
  ``ask()`` twice, as two ``scripts/answer.py`` runs would (without the interpreter start-up);
- ``after``: one answerer (``MasnAnswerer`` / ``AvstAnswerer``, networks kept), two questions;
- ``one-shot`` (demo video): the same with ``one_shot=True`` (each network freed after its use), for
  its memory.

Printed per route: ffmpeg/ffprobe processes started (one of them, per process, is imageio-ffmpeg's
``ffmpeg -version`` check of the binary), feature networks built, first-question and
second-question wall seconds and CPU seconds (the process's and its ffmpeg children's: a busy
machine moves them less; the first question includes building the answerer), and the process's
peak RSS. Then the web service (``webdemo.service``): three AVST and three MASN questions about the demo
video uploaded once, before and after, with the processes they start. Extractor weights: ``--weights
files`` (the default, a user's route) saves random ResNet-152, I3D, Faster R-CNN, ResNet-18 and VGGish
weights as files in ``--out`` once and every route loads them; ``--weights random`` draws them in each
process (``--random-init``). The tiny checkpoints of ``benchkit.tiny_checkpoints``; MASN samples as
``make web`` does (3 clips of 8 frames, detector input 96..128 pixels). ``--json FILE`` also writes
every figure.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = {"avst": [("Is the <Object> in the video always playing?", ["violin"]),
                      ("How many instruments are sounding in the video?", [])],
             "masn": [("what colour is the car?", None), ("what is the man?", None)]}


def counters():
    """``benchkit.processes`` of THIS checkout, loaded by path: it wraps whichever ``feat_script`` the
    route imports (the old checkout has no such module)."""
    spec = importlib.util.spec_from_file_location("bench_processes", ROOT / "benchkit" / "processes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Launches, module.Builds


WEIGHT_FILES = ("resnet152", "i3d", "detector", "resnet18", "vggish")


def write_weight_files(out: Path) -> dict[str, Path]:
    """Random weights of every extractor network, saved once (what a user passes as weight files)."""
    import torch
    import torchvision

    from feat_script.i3d import I3Res50
    from feat_script.objects import faster_rcnn
    from feat_script.vggish import VGGish

    files = {name: out / f"{name}.pth" for name in WEIGHT_FILES}
    builders = {"resnet152": torchvision.models.resnet152, "i3d": I3Res50, "detector": lambda: faster_rcnn(None),
                "resnet18": torchvision.models.resnet18, "vggish": VGGish}
    torch.manual_seed(0)
    for name, path in files.items():
        if not path.exists():
            torch.save(builders[name]().state_dict(), path)
    return files


def small_settings(module, files: dict[str, Path]):
    """MASN's ``make web`` sampling, and the extractor weights: the files, or random ones without them."""
    weights = (module.ExtractorWeights(resnet152=files["resnet152"], i3d=files["i3d"], detector=files["detector"])
               if files else module.ExtractorWeights(random_init=True))
    return module.FeatureSettings(3, 8, 1, 96, 128), weights


def avst_weights(files: dict[str, Path]) -> dict:
    return ({"resnet_weights": files["resnet18"], "vggish_weights": files["vggish"]} if files
            else {"random_init": True})


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (ffmpeg): a figure a busy machine moves
    less than wall time."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def first_and_second(model: str, route: str, video: Path, checkpoints: dict[str, Path],
                     files: dict[str, Path]) -> dict[str, list[float]]:
    """Wall and CPU seconds of the imports, then of the first and of the second question through ``route``
    (the first includes building what the route builds). The imports (torch, torchvision, the package:
    the same modules for every route) are timed apart: a constant of the interpreter that no route
    changes, paid once by a service and by every one-question CLI run."""
    (q1, extra1), (q2, extra2) = QUESTIONS[model]
    out: dict[str, list[float]] = {"seconds": [], "cpu_seconds": []}
    clock = [time.perf_counter(), cpu_seconds()]
    importlib.import_module(f"{model}.answer")
    out["import_s"] = [time.perf_counter() - clock[0], cpu_seconds() - clock[1]]
    clock[:] = [time.perf_counter(), cpu_seconds()]

    def lap() -> None:
        now = [time.perf_counter(), cpu_seconds()]
        out["seconds"].append(now[0] - clock[0])
        out["cpu_seconds"].append(now[1] - clock[1])
        clock[:] = now

    if route == "before":
        import torch

        if model == "avst":
            from avst.answer import ask
            for q, values in ((q1, extra1), (q2, extra2)):
                ask(video, q, values, checkpoints["avst"], device=torch.device("cpu"), **avst_weights(files))
                lap()
        else:
            from masn import answer
            for q in (q1, q2):
                settings, weights = small_settings(answer, files)
                answer.ask(video, q, checkpoints["masn"], settings=settings, weights=weights)
                lap()
        return out
    one_shot = route == "one-shot"
    if model == "avst":
        from avst.answer import AvstAnswerer

        answerer = AvstAnswerer(checkpoints["avst"], one_shot=one_shot, **avst_weights(files))
        asked = [(q1, extra1), (q2, extra2)]
    else:
        from masn import answer

        settings, weights = small_settings(answer, files)
        answerer = answer.MasnAnswerer(checkpoints["masn"], settings=settings, weights=weights, one_shot=one_shot)
        asked = [(q1, None), (q2, None)]
    for q, extra in asked:
        answerer.ask(video, q, extra)
        lap()
    return out


def web(route: str, video: Path, checkpoints: dict[str, Path], files: dict[str, Path]) -> dict:
    """Three AVST and three MASN questions about one upload through the web service."""
    import torch

    from feat_script.decode import ffmpeg_exe
    from masn import answer
    from webdemo import service as web_service

    settings, weights = small_settings(answer, files)
    recipe = web_service.Recipe(masn_weights=weights, settings=settings, random_init=not files,
                                **({"resnet18": files["resnet18"], "vggish": files["vggish"]} if files else {}))
    cpu = torch.device("cpu")
    if route == "before":
        models = web_service.load_models(checkpoints["avst"], [checkpoints["masn"]], recipe, None)
    else:
        models = web_service.load_models(checkpoints["avst"], [checkpoints["masn"]], recipe, None, cpu)
    service = web_service.Service(models, recipe, web_service.Limits(1 << 31, 3600), cpu)
    ffmpeg_exe()  # the binary's one check per process, as a running server has done long before
    try:
        with counters()[0]() as launches:  # from the upload on: what the six questions cost
            with open(video, "rb") as f:
                uploaded = service.add_upload(video.name, f, video.stat().st_size)
            asked = (("avst", QUESTIONS["avst"][0]), ("masn0", QUESTIONS["masn"][0]))
            jobs = [service.submit({"video": uploaded.id, "model": key, "question": q, "values": v or []})
                    for _ in range(3) for key, (q, v) in asked]
            while any(j.state in ("queued", "running") for j in jobs):
                time.sleep(0.05)
        if any(j.state != "done" for j in jobs):
            raise RuntimeError(f"web route {route}: {[j.error for j in jobs]}")
        return {"features": [j.features for j in jobs], "ffmpeg_questions": launches.ffmpeg}
    finally:
        service.close()


def worker(args: argparse.Namespace) -> None:
    """One route in this (fresh) process; prints one JSON line."""
    Launches, Builds = counters()
    checkpoints = json.loads(args.checkpoints)
    checkpoints = {k: Path(v) for k, v in checkpoints.items()}
    files = {k: Path(v) for k, v in json.loads(args.weight_files).items()}
    start = time.perf_counter()
    with Launches() as launches, Builds() as builds:
        if args.model == "web":
            out = web(args.route, args.video, checkpoints, files)
        else:
            out = first_and_second(args.model, args.route, args.video, checkpoints, files)
    out.update(ffmpeg=launches.ffmpeg, networks=builds.count, total_s=time.perf_counter() - start,
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               code=str(Path(sys.modules["feat_script"].__file__).parents[1]))
    print(json.dumps(out))


def run_route(route: str, model: str, video: Path, checkpoints: dict[str, Path], before: Path,
              files: dict[str, Path]) -> dict:
    code = before if route == "before" else ROOT
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--route", route, "--model", model,
           "--video", str(video), "--checkpoints", json.dumps({k: str(v) for k, v in checkpoints.items()}),
           "--weight-files", json.dumps({k: str(v) for k, v in files.items()})]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=code)
    if proc.returncode != 0:
        raise RuntimeError(f"{route} {model} {video.name} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if Path(out["code"]).resolve() != code.resolve():
        raise RuntimeError(f"{route} imported {out['code']}, not {code}")
    return out


def medians(figures: list[dict], label: str, model: str, routes: tuple[str, ...]) -> str:
    """Median first-question wall and CPU seconds of each route over the repeats, and before / after."""
    med = {}
    for route in routes:
        runs = [f for f in figures if (f["video"], f["model"], f["route"]) == (label, model, route)]
        med[route] = [statistics.median(r[key][0] for r in runs) for key in ("seconds", "cpu_seconds")]
    ratio = [b / a for b, a in zip(med["before"], med["after"])]
    return (f"{label:18s} {model:5s} median of {len(runs)}: 1st q " +
            ", ".join(f"{route} {w:.2f} s ({c:.2f} CPU s)" for route, (w, c) in med.items()) +
            f"; before / after {ratio[0]:.2f}x wall, {ratio[1]:.2f}x CPU")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", type=Path, help="a checkout of the code to compare with (git worktree add ...)")
    p.add_argument("--out", type=Path, default=Path("/tmp/bench_answer"))
    p.add_argument("--json", type=Path, default=None, help="also write every figure here")
    p.add_argument("--videos", choices=["demo", "long", "both"], default="both", help="which videos")
    p.add_argument("--models", nargs="+", choices=["masn", "avst", "web"], default=["masn", "avst", "web"])
    p.add_argument("--repeat", type=int, default=1, help="run every route this many times, in turn; medians")
    p.add_argument("--weights", choices=["files", "random"], default="files",
                   help="extractor weights: random ones saved as files once (a user's route), or drawn per process")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--weight-files", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--route", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--checkpoints", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return 0
    if args.before is None or not (args.before / "masn" / "answer.py").is_file():
        p.error("--before: give a checkout of the code to compare with (git worktree add --detach DIR COMMIT)")
    from benchkit.tiny_checkpoints import SHAPES, write_checkpoints
    from feat_script.synthetic_video import make_video

    args.out.mkdir(parents=True, exist_ok=True)
    checkpoints = write_checkpoints(args.out)
    files = write_weight_files(args.out) if args.weights == "files" else {}
    videos = {}
    if args.videos in ("demo", "both"):
        videos["demo 3 s 160x120"] = make_video(args.out / "demo.mp4", SHAPES, seconds=3)
    if args.videos in ("long", "both"):
        videos["60 s 640x480"] = make_video(args.out / "long.mp4", SHAPES, seconds=60, size=(640, 480), fps=25)
    figures = []
    print(f"{'video':18s} {'model':5s} {'route':9s} {'ffmpeg':>6s} {'nets':>5s} {'import s':>8s} {'1st q s':>8s} "
          f"{'2nd q s':>8s} {'1st q CPU s':>11s} {'2nd q CPU s':>11s} {'peak RSS MB':>11s}")
    for label, video in videos.items():
        for model in [m for m in ("masn", "avst") if m in args.models]:
            routes = ("before", "after", "one-shot") if label.startswith("demo") else ("before", "after")
            for _ in range(args.repeat):  # the routes in turn, so a change in the machine's load touches each
                for route in routes:
                    r = run_route(route, model, video, checkpoints, args.before, files)
                    figures.append({"video": label, "model": model, "route": route, **r})
                    print(f"{label:18s} {model:5s} {route:9s} {r['ffmpeg']:6d} {r['networks']:5d} "
                          f"{r['import_s'][0]:8.2f} {r['seconds'][0]:8.2f} {r['seconds'][1]:8.2f} "
                          f"{r['cpu_seconds'][0]:11.2f} {r['cpu_seconds'][1]:11.2f} {r['peak_rss_mb']:11.0f}",
                          flush=True)
            if args.repeat > 1:
                print(medians(figures, label, model, routes), flush=True)
    for label, video in list(videos.items())[:1] if "web" in args.models else []:
        print("\nweb service, 3 AVST + 3 MASN questions about one upload:")
        for route in ("before", "after"):
            r = run_route(route, "web", video, checkpoints, args.before, files)
            figures.append({"video": label, "model": "web", "route": route, **r})
            print(f"{label:18s} {route:9s} ffmpeg/ffprobe processes {r['ffmpeg_questions']:3d} from the upload on "
                  f"({r['ffmpeg']} in the process), networks {r['networks']}, {r['total_s']:.1f} s, peak RSS "
                  f"{r['peak_rss_mb']:.0f} MB, features {' '.join(r['features'])}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
