"""Every command the documentation shows works as written.

- Every command in README.md, the package READMEs and docs/ meets its entry point's own parser with the
  documented flags and values, and every ``make`` target they name exists.
- Every command in README.md also runs, at smoke size, in ``test_readme_commands_run``: each entry
  point of the README has a smoke run in ``SMOKE`` (a README command without one fails the suite).
  Commands that need the papers' data run on the demos' synthetic data with the same flags.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.doc_commands import ROOT, Command, commands, make_targets, parse_as_documented

ALL = commands()
README = [c for c in ALL if c.source.startswith("README.md:")]


def ids(found: list[Command]) -> list[str]:
    return [f"{c.source} {c.key}" for c in found]


@pytest.mark.parametrize("command", [c for c in ALL if c.kind != "make"], ids=ids([c for c in ALL if c.kind != "make"]))
def test_documented_command_parses(command, monkeypatch, tmp_path, capsys):
    assert command.kind != "invalid", f"{command.source}: {command.target}: {command.text}"
    monkeypatch.chdir(tmp_path)  # an entry point that wrote something before parsing would write here
    parsed = parse_as_documented(command, monkeypatch)
    assert parsed.extra == [], f"{command.source}: {parsed.parser.prog} does not know {parsed.extra}: {command.text}"
    assert list(tmp_path.iterdir()) == [], f"{command.source}: parsing wrote {list(tmp_path.iterdir())}"


@pytest.mark.parametrize("command", [c for c in ALL if c.kind == "make"], ids=ids([c for c in ALL if c.kind == "make"]))
def test_documented_make_target_exists(command):
    assert command.target in make_targets(), f"{command.source}: the Makefile has no target {command.target!r}"


def make_recipe(target: str) -> str:
    """What ``make TARGET`` runs (``make -n``: printed, not run)."""
    done = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def python(*argv: str, timeout: float = 600, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    script = [str(ROOT / argv[0]) if argv[0].endswith(".py") else argv[0], *argv[1:]]
    done = subprocess.run([sys.executable, *script], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    tail = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{tail}"
    return done


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory) -> Path:
    """``make demo-video``'s script at smoke size: videos, features, checkpoints, answers."""
    out = tmp_path_factory.mktemp("demo_video") / "out"
    done = python("scripts/demo_video.py", "--quick", "--out", str(out))
    assert "Demo from pixels done" in done.stdout
    return out


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    """The synthetic data sets ``make demo`` generates (demos/data.py)."""
    from demos.data import make

    out = tmp_path_factory.mktemp("demo_data")
    make(out)
    return out


# ------------------------------------------------------------------------------------------ smoke runs


def smoke_make_demo(command: Command, work: Path, fixtures: dict) -> None:
    assert "scripts/demo.py" in make_recipe("demo")
    done = python("scripts/demo.py", "--quick", "--data", str(work / "data"), "--runs", str(work / "runs"))
    assert "MASN on synthetic TGIF-QA" in done.stdout and "AVST on the synthetic test set" in done.stdout


def smoke_make_demo_video(command: Command, work: Path, fixtures: dict) -> None:
    assert "scripts/demo_video.py" in make_recipe("demo-video")
    out = fixtures["demo_video"]()
    assert (out / "heatmaps").is_dir() and any((out / "heatmaps").glob("*.png"))


def smoke_make_web(command: Command, work: Path, fixtures: dict) -> None:
    """The server ``make web`` starts, on the quick demo's checkpoints: info, pick, one AVST and one MASN answer."""
    recipe = [line for line in make_recipe("web").replace("\\\n", " ").splitlines() if "-m webdemo" in line]
    assert recipe, "make web does not start python -m webdemo"
    out = fixtures["demo_video"]()
    flags = recipe[-1].split("-m webdemo", 1)[1].split()
    flags = [_demo_path(f, out) for f in flags]
    serve_and_ask([*flags, "--port", "0"], work)


def _demo_path(flag: str, out: Path) -> str:
    return str(out / flag.split("runs/demo_video/", 1)[1]) if "runs/demo_video/" in flag else flag


def serve_and_ask(flags: list[str], work: Path) -> None:
    server = subprocess.Popen([sys.executable, "-m", "webdemo", *flags], cwd=work, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        url = _wait_for_url(server)
        info = _get(url + "api/info")
        kinds = {m["kind"]: m for m in info["models"]}
        assert set(kinds) == {"avst", "masn"} and not any(m["error"] for m in info["models"]), info["models"]
        assert info["demo_videos"], "make web offers no demo video"
        video = _post(url + "api/pick", {"name": info["demo_videos"][-1]})
        for kind, question in (("avst", "Is the <Object> in the video always playing?"),
                               ("masn", "How many squares move ?")):
            job = _post(url + "api/ask", {"video": video["id"], "model": kinds[kind]["key"], "question": question,
                                          "values": ["red"] if kind == "avst" else []})
            result = _wait_for_job(url, job["id"])
            assert result["state"] == "done", result
            assert result["result"]["answer"], result
    finally:
        server.terminate()
        stdout, stderr = server.communicate(timeout=60)
    assert "Traceback" not in stderr, stderr


def _wait_for_url(server: subprocess.Popen, timeout: float = 300) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = server.stdout.readline()
        if not line and server.poll() is not None:
            raise AssertionError(f"python -m webdemo exited {server.returncode}: {server.stderr.read()[-3000:]}")
        found = re.search(r"(http://[\d.]+:\d+/)", line)
        if found:
            return found.group(1)
    raise AssertionError("python -m webdemo printed no address")


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as reply:
        return json.load(reply)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        return json.load(reply)


def _wait_for_job(url: str, job: str, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = _get(f"{url}api/jobs/{job}")
        if state["state"] in ("done", "error"):
            return state
        time.sleep(0.3)
    raise AssertionError(f"question {job} not answered in {timeout} s")


def smoke_make_check(target: str) -> Callable[[Command, Path, dict], None]:
    """Targets that install or run the suite itself: their recipe is checked, not run from inside the suite."""
    def check(command: Command, work: Path, fixtures: dict) -> None:
        make_recipe(target)
    return check


# The README's main commands form one pipeline (stage 1 -> AVST -> its test -> answers): they run in
# order, in one folder laid out as data/README.md says, over the demos' synthetic data and videos.
LAYOUT = {"data/tgif-qa/question": ("demo_data", "tgif-qa/question"), "data/tgif-qa/feats": ("demo_data", "tgif-qa"),
          "data/tgif-qa/vocab": ("demo_data", "tgif-qa/vocab"),
          "data/feats/vggish": ("demo_data", "music-avqa/feats/vggish"),
          "data/feats/res18_14x14": ("demo_data", "music-avqa/feats/res18_14x14"),
          "data/frames": ("demo_data", "music-avqa/frames"), "data/json": ("demo_data", "music-avqa/json"),
          "data/music-avqa/videos": ("demo_video", "videos")}
# Smoke size on top of the documented flags (the last of a repeated flag wins), and outputs that the
# README writes over the inputs of the layout, moved beside them.
SMOKE_FLAGS = {
    "masn/main.py": ["--max_epoch", "1", "--hidden_size", "16", "--v_max_length", "5", "--num_workers", "0",
                     "--device", "cpu", "--quiet"],
    "grounding_gen/main_grd_gen.py": ["--epochs", "1", "--num_workers", "0", "--device", "cpu", "--quiet"],
    "avst/main_avst.py": ["--num_workers", "0", "--device", "cpu", "--quiet"],
    "-m feat_script 14x14": ["--seconds", "2", "--workers", "0", "--device", "cpu", "--quiet"],
    "scripts/answer.py": ["--random-init", "--device", "cpu"],
}
TRAINING = {"avst/main_avst.py": ["--epochs", "1"]}
MOVED_OUTPUTS = {"-m feat_script 14x14": {"--out": "extracted/res18_14x14"}}
# The README asks a MUSIC-AVQA question; the synthetic MUSIC-AVQA vocabulary lacks its words, the raw-video
# demo's AVST checkpoint was trained on that very question (about its "red" square).
DEMO_INPUTS = {"scripts/answer.py": {"--checkpoint": "train/avst/checkpoints/best.pt"}}
DEMO_VALUES = {"scripts/answer.py": {"--values": "red"}}


@pytest.fixture(scope="module")
def readme_folder(tmp_path_factory, demo_data, demo_video) -> Path:
    import torch
    import torchvision

    work = tmp_path_factory.mktemp("readme")
    sources = {"demo_data": demo_data, "demo_video": demo_video}
    for link, (source, inside) in LAYOUT.items():
        (work / link).parent.mkdir(parents=True, exist_ok=True)
        (work / link).symlink_to(sources[source] / inside)
    (work / "checkpoints").mkdir()
    torch.save(torchvision.models.resnet18().state_dict(), work / "checkpoints/resnet18-5c106cde.pth")  # random
    (work / "v.mp4").symlink_to(sorted((demo_video / "videos").iterdir())[-1])
    return work


def smoke_as_written(command: Command, work: Path, fixtures: dict) -> None:
    """The documented command, in the README's folder layout, at smoke size."""
    folder = fixtures["readme_folder"]()
    argv = list(command.argv)
    for flag, value in MOVED_OUTPUTS.get(command.key, {}).items():
        argv[argv.index(flag) + 1] = value
    for flag, inside in DEMO_INPUTS.get(command.key, {}).items():
        argv[argv.index(flag) + 1] = str(fixtures["demo_video"]() / inside)
    for flag, value in DEMO_VALUES.get(command.key, {}).items():
        argv[argv.index(flag) + 1] = value
    extra = SMOKE_FLAGS[command.key] + (TRAINING.get(command.key, []) if "test" not in argv else [])
    start = ["-m", command.target] if command.kind == "module" else [command.target]
    python(*start, *argv, *extra, cwd=folder)


SMOKE: dict[str, Callable[[Command, Path, dict], None]] = {
    **{key: smoke_as_written for key in SMOKE_FLAGS},
    "make demo": smoke_make_demo,
    "make demo-video": smoke_make_demo_video,
    "make web": smoke_make_web,
    "make setup": smoke_make_check("setup"),
    "make test": smoke_make_check("test"),
    "make screenshot": smoke_make_check("screenshot"),
}


def test_every_readme_command_has_a_smoke_run():
    missing = sorted({c.key for c in README} - set(SMOKE))
    assert not missing, f"README.md shows commands without a smoke run in SMOKE (tests/test_doc_commands.py): {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("command", README, ids=ids(README))
def test_readme_commands_run(command, tmp_path, request):
    if command.key not in SMOKE:
        pytest.fail(f"{command.source}: no smoke run for {command.key}")
    fixtures = {name: (lambda name=name: request.getfixturevalue(name))
                for name in ("demo_video", "demo_data", "readme_folder")}
    SMOKE[command.key](command, tmp_path, fixtures)
