"""The GPU checks in one run (``scripts/gpu_check.sh`` calls this): JSON + Markdown in --out.

Sections, each timed and recorded as ok / failed / skipped without stopping the others:

* environment: torch, CUDA, device, packages (and which optional ones were replaced by stubs);
* parity: MASN (Count, Action, FrameQA) and AVST in fp32 on the device against the CPU, TF32 off
  (pass: max abs difference <= 1e-4); the TF32 figure is recorded beside it;
* amp_steps: one epoch of the engine's Trainer in bf16 and fp16 (GradScaler) for both models: finite
  losses, and the question LSTMs running in fp32 with autocast off inside;
* resume: AVST trained by its CLI (--deterministic, checkpoint every 2 steps), SIGKILLed after its
  first checkpoint and resumed, against an uninterrupted run: identical final weights;
* train_throughput: samples/s of an AVST training epoch fed by each input pipeline (``--input loader``,
  ``--input reader``; per-video .npy) against the same steps on batches already on the device (the
  difference is the pipeline's share), and three batches each pipeline put on the device against the
  dataset's own reads: equal; the faster pipeline is printed as the one to make the default;
* input_bench: ``scripts/bench_input.py`` for AVST (f32, f16) and MASN, both pipelines side by side
  against the 50 GB/s link bound;
* extraction: ``scripts/bench_extract.py`` (14x14), end-to-end frames/s against the model alone
  (target >= 50 %), on long videos and on many short ones (GIF-like: their rows share forwards
  across videos); skipped when no ffmpeg is available.

``--dry-run`` runs every section on the CPU at tiny sizes in seconds (the test suite does, so the
script cannot rot). Nothing is downloaded; data are generated in a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchkit.batches import avst_batch, masn_batch
from benchkit.timing import synchronize as sync
from benchkit.weights import perturb
from engine.cli import CommandParser

ROOT = Path(__file__).resolve().parents[1]

SECTIONS = ("environment", "parity", "amp_steps", "resume", "train_throughput", "input_bench", "extraction")
PARITY_TOL = 1e-4
STUBS = {  # optional packages the GPU machine may lack; the check runs without them
    "tensorboardX": "class SummaryWriter:\n    def __init__(self, *a, **k): pass\n"
                    "    def add_scalar(self, *a, **k): pass\n    def close(self): pass\n",
    "tqdm": "def tqdm(iterable=None, *a, **k):\n    return iterable\n",
}


class Skipped(Exception):
    """A section that cannot run on this machine (the reason is recorded)."""


def install_stubs(folder: Path) -> list[str]:
    """Importable stand-ins for the missing optional packages, for this process and its children."""
    missing = []
    for name, source in STUBS.items():
        try:
            __import__(name)
        except ImportError:
            (folder / name).mkdir(parents=True, exist_ok=True)
            (folder / name / "__init__.py").write_text(source)
            missing.append(name)
    if missing:
        sys.path.insert(0, str(folder))
        os.environ["PYTHONPATH"] = os.pathsep.join([str(folder), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return missing


# ---------------------------------------------------------------- models and inputs
def masn_model(size: dict, answers: int | None, seed: int = 0) -> torch.nn.Module:
    from masn.model import MASN

    torch.manual_seed(seed)
    emb = np.random.RandomState(seed).normal(size=(size["vocab"], 300))
    model = MASN(size["vocab"], 1, emb, size["feat"], size["feat"], size["hidden"], dropout_p=0.3,
                 answer_vocab_size=answers, q_max_len=size["words"], v_max_len=size["frames"])
    return perturb(model, torch.Generator().manual_seed(seed + 1))  # spread the outputs as parity_masn.py does


def masn_inputs(size: dict, task: str, seed: int) -> list[torch.Tensor]:
    return masn_batch(task, batch=size["batch"], frames=size["frames"], objects=size["objects"], feat=size["feat"],
                      words=size["words"], vocab=size["vocab"], seed=seed)


def avst_inputs(size: dict, seed: int) -> dict[str, torch.Tensor]:
    return avst_batch(batch=size["batch"], frames=size["time"], hw=size["hw"], seed=seed)


def to(batch, device: torch.device):
    from engine.trainer import to_device

    return to_device(batch, device)


# ---------------------------------------------------------------- sections
def environment(ctx: Namespace) -> dict:
    from importlib import metadata

    info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "cpus": os.cpu_count(),
            "device": str(ctx.device), "stubbed": ctx.stubbed}
    if ctx.device.type == "cuda":
        props = torch.cuda.get_device_properties(ctx.device)
        info.update(name=props.name, capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    for name in ("torchvision", "numpy", "h5py", "pandas", "tensorboardX", "tqdm", "ffmpeg-python", "imageio-ffmpeg"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    return info


def parity(ctx: Namespace) -> dict:
    from avst.model import AVST

    out: dict = {"tolerance": PARITY_TOL}
    cases: list[tuple[str, Callable[[], torch.nn.Module], Callable[[torch.nn.Module, object], torch.Tensor], object]]
    cases = []
    for task, answers in (("Count", None), ("Action", None), ("FrameQA", 50)):
        cases.append((f"masn_{task}", lambda a=answers: masn_model(ctx.masn, a),
                      lambda m, b, t=task: torch.cat([x.flatten().float() for x in m(t, *b)[:1]]),
                      masn_inputs(ctx.masn, task, seed=3)))

    def avst_outputs(model, batch):
        return torch.cat([x.flatten() for x in model(batch["audio"], batch["visual_posi"], batch["visual_nega"],
                                                          batch["question"])])

    torch.manual_seed(0)
    cases.append(("avst", AVST, avst_outputs, avst_inputs(ctx.avst, seed=3)))
    worst = 0.0
    for name, build, run, batch in cases:
        model = build().eval()
        with torch.no_grad():
            expected = run(model, batch)
            model.to(ctx.device)
            diffs = {}
            for tf32 in (False, True):
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
                got = run(model, to(batch, ctx.device)).cpu()
                diffs["tf32" if tf32 else "fp32"] = (got - expected).abs().max().item()
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        out[name] = {**diffs, "output_std": expected.std().item()}
        worst = max(worst, diffs["fp32"])
    out["worst_fp32"] = worst
    if worst > PARITY_TOL:
        raise AssertionError(f"device vs CPU max abs difference {worst:.3g} > {PARITY_TOL}")
    return out


def _trainer(ctx: Namespace, model, task, work: Path, *, amp: str, batch_size: int, workers: int = 0,
             collate=None, input: str = "loader"):
    from engine.run import Run
    from engine.trainer import Trainer

    run = Run(Namespace(run_dir=str(work), quiet=True, seed=1, resume=False), "gpu_check")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    return Trainer(run, model, optimizer, task, device=ctx.device, epochs=1, batch_size=batch_size,
                   num_workers=workers, collate_fn=collate, amp=amp, seed=1, input=input)


def _lstm_probe(lstm: torch.nn.Module, device: torch.device, seen: list):
    def hook(module, args, output):
        data = args[0].data if hasattr(args[0], "batch_sizes") else args[0]
        seen.append((str(data.dtype), torch.is_autocast_enabled(device.type)))
    return lstm.register_forward_hook(hook)


def amp_steps(ctx: Namespace) -> dict:
    from avst.model import AVST
    from avst.tasks import AVQATask
    from engine.sampling import EpochSampler
    from masn.tasks import MASNTask

    out = {}
    steps = ctx.steps
    setups = {
        "avst": (lambda: AVST(), AVQATask, lambda m: m.question_encoder.lstm,
                 [avst_inputs(ctx.avst, seed=s) for s in range(steps)]),
        "masn": (lambda: masn_model(ctx.masn, None), lambda: MASNTask("Count"), lambda m: m.sentence_encoder.rnn,
                 [masn_inputs(ctx.masn, "Count", seed=s) for s in range(steps)]),
    }
    failures = []
    for name, (build, make_task, lstm_of, batches) in setups.items():
        samples = _unbatch(batches)
        for amp in ("off", "bf16", "fp16"):
            torch.manual_seed(0)
            model = build()
            seen: list = []
            handle = _lstm_probe(lstm_of(model), ctx.device, seen)
            trainer = _trainer(ctx, model, make_task(), ctx.work / f"amp_{name}_{amp}", amp=amp,
                               batch_size=len(samples) // steps)
            sampler = EpochSampler(len(samples), trainer.batch_size, shuffle=False, seed=1)
            sync(ctx.device)
            start = time.perf_counter()
            stats = trainer.train_epoch(samples, sampler)
            sync(ctx.device)
            seconds = time.perf_counter() - start
            handle.remove()
            loss = float(stats["loss"])
            lstm_ok = all(dtype == "torch.float32" and not on for dtype, on in seen) and bool(seen)
            out[f"{name}_{amp}"] = {"loss": loss, "finite": bool(np.isfinite(loss)), "steps_per_s": steps / seconds,
                                    "lstm_fp32_autocast_off": lstm_ok,
                                    "scale": trainer.scaler.get_scale() if amp == "fp16" else None}
            if not (np.isfinite(loss) and lstm_ok):
                failures.append(f"{name} {amp}")
    if failures:
        raise AssertionError("non-finite loss or LSTM not in fp32: " + ", ".join(failures))
    return out


def _unbatch(batches: list) -> list:
    """Per-sample items (what a Dataset returns) from whole batches."""
    items = []
    for batch in batches:
        if isinstance(batch, dict):
            n = len(next(iter(batch.values())))
            items += [{k: v[i] for k, v in batch.items()} for i in range(n)]
        else:
            items += [tuple(x[i] for x in batch) for i in range(len(batch[0]))]
    return items


def _avst_data(ctx: Namespace) -> Path:
    if not hasattr(ctx, "avst_data"):
        from avst.data.synthetic import make_dataset

        ctx.avst_data = ctx.work / "music-avqa"
        make_dataset(ctx.avst_data, seed=0, n_videos=ctx.videos, n_frame_videos=0, rounds=ctx.rounds)
    return ctx.avst_data


def _avst_cli(ctx: Namespace, run_dir: Path, *extra: str) -> list[str]:
    data = _avst_data(ctx)
    labels = [x for s in ("train", "val") for x in (f"--label_{s}", str(data / "json" / f"avqa-{s}.json"))]
    return [sys.executable, str(ROOT / "avst" / "main_avst.py"), "--mode", "train", "--no_grounding_init",
            "--audio_dir", str(data / "feats/vggish"), "--video_res14x14_dir", str(data / "feats/res18_14x14"),
            "--vocab_json", str(data / "json/avqa-train.json"), *labels, "--epochs", str(ctx.epochs), "--batch-size",
            str(ctx.avst["batch"]), "--eval_batch_size", "64", "--num_workers", str(min(ctx.workers, 4)),
            "--save_every_steps", "2", "--deterministic", "--quiet", "--device", ctx.device.type,
            "--run_dir", str(run_dir), *extra]


def _run(cmd: list[str], env: dict | None = None) -> str:
    """Run ``cmd``; its stdout, or an error carrying the end of its stderr."""
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"{Path(cmd[1]).name} exited with {done.returncode}: {done.stderr.strip()[-1500:]}")
    return done.stdout


def resume(ctx: Namespace) -> dict:
    from engine.checkpoint import load_checkpoint, model_state

    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    straight, killed = ctx.work / "resume_straight", ctx.work / "resume_killed"
    _run(_avst_cli(ctx, straight), env)
    proc = subprocess.Popen(_avst_cli(ctx, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    last = killed / "checkpoints" / "last.pt"
    while proc.poll() is None and not last.exists():
        time.sleep(0.05)
    killed_mid_run = proc.poll() is None
    if killed_mid_run:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = load_checkpoint(last)
    position = {"epoch": at_kill["epoch"], "step_in_epoch": at_kill["step_in_epoch"]}
    _run(_avst_cli(ctx, killed, "--resume"), env)
    a = model_state(load_checkpoint(straight / "checkpoints" / "last.pt"))
    b = model_state(load_checkpoint(last))
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    identical = all(torch.equal(a[k], b[k]) for k in a)
    out = {"killed_mid_run": killed_mid_run, "checkpoint_at_kill": position, "identical": identical,
           "max_abs_diff": worst}
    if not (identical and killed_mid_run):
        raise AssertionError(f"resumed run differs from the uninterrupted one (max abs diff {worst:.3g}) "
                             f"or was not killed mid-run ({killed_mid_run})")
    return out


def train_throughput(ctx: Namespace) -> dict:
    from avst.data.annotations import load_records
    from avst.data.dataset import AVQADataset
    from avst.data.features import open_features
    from avst.data.vocab import Vocab
    from avst.model import AVST
    from avst.tasks import AVQATask
    from engine.reader import INPUTS
    from engine.sampling import EpochSampler

    data = _avst_data(ctx)
    records = load_records(data / "json" / "avqa-train.json")
    vocab = Vocab.from_records(records)
    dataset = AVQADataset(records[:ctx.throughput_samples], vocab, open_features("audio", data / "feats/vggish", None),
                          open_features("visual", data / "feats/res18_14x14", None), negatives=True, seed=1)
    batch_size = ctx.throughput_batch
    amp = "bf16" if ctx.cuda else "off"
    sampler = EpochSampler(len(dataset), batch_size, shuffle=True, seed=1)
    out: dict = {"workers": ctx.workers, "batch_size": batch_size, "samples": len(dataset)}
    for name in INPUTS:
        torch.manual_seed(0)
        model = AVST(vocab_size=len(vocab.words), num_answers=len(vocab.answers))
        trainer = _trainer(ctx, model, AVQATask(), ctx.work / f"throughput_{name}", amp=amp, batch_size=batch_size,
                           workers=ctx.workers, input=name)
        timings = []
        for epoch in range(2):  # the first epoch includes starting the workers / allocating the ring
            trainer.epoch, trainer.step_in_epoch = epoch, 0
            sync(ctx.device)
            start = time.perf_counter()
            trainer.train_epoch(dataset, sampler)
            sync(ctx.device)
            timings.append(time.perf_counter() - start)
        # three batches the pipeline put on the device hold what the dataset reads in this process (each
        # compared before the next is asked for: the reader reuses its buffers)
        chunks = [[(i + k) % len(dataset) for k in range(batch_size)] for i in range(0, 3 * batch_size, batch_size)]
        dataset.set_epoch(5)
        fed = trainer._loader(dataset, [i for c in chunks for i in c], batch_size, 5)
        for chunk, got in zip(chunks, fed, strict=True):
            for key, value in dataset.__getitems__(chunk).batch.items():
                if not torch.equal(to(got, ctx.device)[key].cpu(), value):
                    raise AssertionError(f"--input {name}: batch differs from the dataset's read in {key!r}")
        rates = {"first_epoch": len(dataset) / timings[0], "second_epoch": len(dataset) / timings[1]}
        out[name] = {"samples_per_s": rates, "batches_equal_reads": True}
    # the same steps on batches already on the device (fresh tensors from the loader pipeline)
    loader = _trainer(ctx, model, AVQATask(), ctx.work / "throughput_source", amp=amp, batch_size=batch_size,
                      workers=0)._loader(dataset, sampler, batch_size, 0)
    batches = [to(b, ctx.device) for b, _ in zip(loader, range(len(dataset) // batch_size))]
    fed = _trainer(ctx, model, AVQATask(), ctx.work / "throughput_preloaded", amp=amp, batch_size=1,
                   collate=lambda items: items[0])
    one = EpochSampler(len(batches), 1, shuffle=False, seed=1)
    fed.train_epoch(batches, one)  # warm-up
    sync(ctx.device)
    start = time.perf_counter()
    fed.epoch, fed.step_in_epoch = 1, 0  # a whole second epoch (the warm-up left the position at its end)
    fed.train_epoch(batches, one)
    sync(ctx.device)
    preloaded = len(batches) * batch_size / (time.perf_counter() - start)
    for name in INPUTS:
        out[name]["share_of_epoch"] = max(0.0, 1 - out[name]["samples_per_s"]["second_epoch"] / preloaded)
    best = max(INPUTS, key=lambda n: out[n]["samples_per_s"]["second_epoch"])
    out.update(preloaded_samples_per_s=preloaded, full_batches=len(batches),
               bytes_per_sample_to_device=sum(v[0].numel() * v.element_size() for v in batches[0].values()),
               make_default=best)
    return out


def input_bench(ctx: Namespace) -> dict:
    """``scripts/bench_input.py`` for AVST and MASN, both pipelines, on this machine."""
    report = ctx.work / "bench_input.json"
    stdout = _run([sys.executable, str(ROOT / "scripts" / "bench_input.py"), "--only", "avst", "masn",
                   "--json", str(report), *ctx.bench_input_args])
    rows = json.loads(report.read_text())
    return {"args": ctx.bench_input_args, "table": [line for line in stdout.splitlines() if line.startswith("|")],
            "reader_over_loader_cpu": {r["pipeline"]: r["loader"]["cpu_ms"] / r["reader"]["cpu_ms"] for r in rows}}


def extraction(ctx: Namespace) -> dict:
    try:
        import ffmpeg  # noqa: F401

        from feat_script.decode import ffmpeg_exe

        ffmpeg_exe()
    except (ImportError, RuntimeError) as err:
        raise Skipped(f"no ffmpeg ({err}); carry wheels of ffmpeg-python and imageio-ffmpeg in .gpu_wheels/ "
                      "(see scripts/gpu_check.sh)") from None
    out: dict = {"target": 0.5}
    for case, case_args in ctx.extract_cases.items():
        args = case_args + ["--device", str(ctx.device)]
        stdout = _run([sys.executable, str(ROOT / "scripts" / "bench_extract.py"), *args])
        match = re.search(r"end-to-end / model-only \(folded\): (\d+)%", stdout)
        ours = re.search(r"ours .*?([\d.]+) frames/s", stdout)
        model = re.search(r"folded\+channels_last ([\d.]+) frames/s", stdout)
        out[case] = {"args": args, "stdout": stdout.strip().splitlines()[-8:],
                     "end_to_end_over_model_only": int(match.group(1)) / 100 if match else None,
                     "end_to_end_frames_per_s": float(ours.group(1)) if ours else None,
                     "model_only_frames_per_s": float(model.group(1)) if model else None}
    return out


FUNCTIONS = {"environment": environment, "parity": parity, "amp_steps": amp_steps, "resume": resume,
             "train_throughput": train_throughput, "input_bench": input_bench, "extraction": extraction}


# ---------------------------------------------------------------- driver
def context(args: argparse.Namespace, work: Path) -> Namespace:
    device = torch.device("cpu" if args.dry_run else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device visible; use --dry-run for the CPU rehearsal")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if args.dry_run:
        return Namespace(device=device, cuda=False, work=work, steps=2, workers=1, videos=3, rounds=1, epochs=1,
                         throughput_samples=2, throughput_batch=2,
                         bench_input_args=["--videos", "3", "--batches", "2", "--batch_size", "2", "--workers", "1"],
                         masn={"vocab": 30, "feat": 24, "hidden": 32, "frames": 4, "objects": 2, "words": 6,
                               "batch": 2},
                         avst={"batch": 8, "time": 2, "hw": 2},
                         extract_cases={"short_videos": ["--videos", "2", "--seconds", "1", "--size", "96x64",
                                                         "--only", "14x14", "--workers", "1", "--batch-size", "4"]})
    return Namespace(device=device, cuda=True, work=work, steps=8, workers=min(8, cpus), videos=48, rounds=4, epochs=2,
                     throughput_samples=None, throughput_batch=64,
                     bench_input_args=["--workers", str(min(8, cpus)), "--batches", "48"],
                     masn={"vocab": 100, "feat": 2048, "hidden": 512, "frames": 20, "objects": 10, "words": 20,
                           "batch": 16},
                     avst={"batch": 64, "time": 10, "hw": 14},
                     extract_cases={
                         "long_videos": ["--videos", "2", "--seconds", "30", "--only", "14x14", "--workers",
                                         str(min(8, cpus)), "--batch-size", "64"],
                         "short_videos": ["--videos", "32", "--seconds", "2", "--size", "320x240", "--only",
                                          "14x14", "--workers", str(min(8, cpus)), "--batch-size", "64"]})


def markdown(summary: dict) -> str:
    lines = [f"# GPU check ({summary['started']}, {'dry run on CPU' if summary['dry_run'] else summary['device']})",
             ""]
    for name, section in summary["sections"].items():
        lines += [f"## {name}: {section['status']} ({section['seconds']:.1f} s)", ""]
        for key, value in section.items():
            if key not in ("status", "seconds"):
                lines.append(f"- {key}: `{json.dumps(value)}`")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "out/gpu_check"))
    parser.add_argument("--dry-run", action="store_true", help="every section on the CPU at tiny sizes")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, default=None, help="run these sections only")
    args = parser.parse_command(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    summary: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "dry_run": args.dry_run, "sections": {}}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        ctx = context(args, Path(tmp))
        ctx.stubbed = install_stubs(Path(tmp) / "stubs")
        summary["device"] = str(ctx.device)
        for name in args.only or SECTIONS:
            start = time.perf_counter()
            try:
                result = {"status": "ok", **FUNCTIONS[name](ctx)}
            except Skipped as why:
                result = {"status": "skipped", "reason": str(why)}
            except Exception as err:  # a failed section is recorded; the others still run
                result = {"status": "failed", "error": f"{type(err).__name__}: {err}",
                          "traceback": traceback.format_exc().splitlines()[-6:]}
            result["seconds"] = time.perf_counter() - start
            summary["sections"][name] = result
            print(f"{name}: {result['status']} ({result['seconds']:.1f} s)", flush=True)
            (args.out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
            (args.out / "gpu_check.md").write_text(markdown(summary))
    throughput = summary["sections"].get("train_throughput", {})
    if throughput.get("status") == "ok":
        rates = ", ".join(f"{n} {throughput[n]['samples_per_s']['second_epoch']:.3g}" for n in ("loader", "reader"))
        print(f"input pipeline: make --input {throughput['make_default']} the default "
              f"(AVST training samples/s on {summary['device']}: {rates})")
    print(f"summary: {args.out / 'gpu_check.json'}, {args.out / 'gpu_check.md'}")
    return int(any(s["status"] == "failed" for s in summary["sections"].values()))


if __name__ == "__main__":
    sys.exit(main())
