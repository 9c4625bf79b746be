"""Every numeric flag of every command is checked at parse time against its range, and flags are never
ignored without a word (engine/cli.py).

Table-driven: for each command and numeric flag, the range written out here (not read back from the
code) gives the values tried: NaN, +-inf, text, the first value past each end (refused: exit 2, one
line on stderr naming the flag and the range, nothing created in the working folder) and each closed
end (accepted). The commands run in this process (the errors come from the parser, before any model
work); two run as a user runs them, in a subprocess.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.cli import Bounded, CommandParser, given, only_when, positive_float
from engine.errors import run_cli

ROOT = Path(__file__).resolve().parents[1]
INF = math.inf
SEED = ("int", 0, 2**32 - 1, "[]")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# (kind, low, high, ends): ends is two of "[]()", closed or open at each end.
COUNT, COUNT0 = ("int", 1, INF, "[)"), ("int", 0, INF, "[)")
POSITIVE, NON_NEGATIVE = ("float", 0, INF, "()"), ("float", 0, INF, "[)")
ENGINE = {"--seed": (SEED, []), "--save-every-steps": (COUNT0, [])}
MASN = {**ENGINE, "--hidden_size": (COUNT, []), "--max_epoch": (COUNT, []), "--q_max_length": (COUNT, []),
        "--v_max_length": (COUNT, []), "--rnn_layers": (COUNT, []), "--gcn_layers": (COUNT, []),
        "--batch_size": (COUNT, []), "--eval-batch-size": (COUNT, []), "--max_n_videos": (COUNT, []),
        "--num_workers": (COUNT0, []), "--lr": (POSITIVE, []), "--lr_list": (COUNT, []),
        "--dropout": (("float", 0, 1, "[)"), []), "--weight_decay": (NON_NEGATIVE, [])}
TGIF = {**MASN, "--val_ratio": (("float", 0, 1, "()"), []), "--split-seed": (SEED, [])}
MSQA = {**MASN, **{flag: (spec, ["--dataset", "tgif-qa"]) for flag, (spec, _) in TGIF.items() if flag not in MASN}}
AVST = {**ENGINE, "--batch-size": (COUNT, []), "--eval-batch-size": (COUNT, []), "--epochs": (COUNT, []),
        "--lr": (POSITIVE, []), "--step-size": (COUNT, []), "--gamma": (("float", 0, 1, "(]"), []),
        "--num_workers": (COUNT0, []), "--heatmaps": (COUNT0, ["--mode", "test"]), "--log-interval": (COUNT, [])}
EXTRACTOR = {"--seed": (SEED, ["--random-init"]), "--batch-size": (COUNT, []), "--workers": (COUNT0, [])}
CLIPS = {"--num-clips": (COUNT, []), "--clip-len": (COUNT, []), "--clip-stride": (COUNT, [])}
MODES = {"--seconds": (COUNT, ["--sampling", "fixed60"]), "--num-clips": (COUNT, ["--sampling", "masn"])}
ASKING = {"--num-clips": (COUNT, []), "--clip-len": (COUNT, []), "--clip-stride": (COUNT, []),
          "--det-min-size": (COUNT, []), "--det-max-size": (COUNT, ["--det-min-size", "1"])}
EXTRACTORS = {
    "frames": {"--seconds": (COUNT, ["--mode", "fixed60"]), "--jpeg-quality": (("int", 1, 100, "[]"), [])},
    "audio": {"--rate": (("int", 1, 44100, "[]"), [])},
    "vggish": {"--num-secs": (COUNT, [])},
    "resnet": MODES,
    "14x14": {"--seconds": (COUNT, []), "--jpeg-quality": (("int", 0, 100, "[]"), [])},
    "r2plus1d": {**MODES, "--clip-len": (COUNT, []), "--clip-stride": (COUNT, ["--clip-len", "2"])},
    "i3d": CLIPS,
    "objects": {**CLIPS, "--det-min-size": (COUNT, []), "--det-max-size": (COUNT, ["--det-min-size", "1"]),
                "--det-batch-size": (COUNT, []), "--roi-size": (COUNT, [])},
    "clip": {"--seconds": (COUNT, []), "--jpeg-quality": (("int", 0, 100, "[]"), [])},
    "vit-tome": {"--r": (COUNT0, []), "--merge-layers": (COUNT0, []), "--seconds": (COUNT, []),
                 "--jpeg-quality": (("int", 0, 100, "[]"), [])},
}


def commands() -> dict[str, tuple[Callable, Callable[[list[str]], object], list[str], dict]]:
    """command -> (its parser, its main run in this process, the flags it needs, {numeric flag: (range, extra)})."""
    import avst.main_avst
    import grounding_gen.main_grd_gen
    import grounding_gen.main_grd_gen_vis
    import masn.data.check
    import masn.main
    import webdemo.cli
    from feat_script.__main__ import cli as extract
    from feat_script.base import build_parser as extractor_parser
    from feat_script.registry import extractor_class

    answer, check_data = _script("answer"), _script("check_data")
    out = {
        "masn/main.py": (masn.main.build_parser, masn.main.main, [], TGIF),
        "masn/main_msvd.py": (lambda: masn.main.build_parser("msvd-qa"),
                              lambda argv: masn.main.main(argv, dataset="msvd-qa"), [], MSQA),
        "masn/main_msrvtt.py": (lambda: masn.main.build_parser("msrvtt-qa"),
                                lambda argv: masn.main.main(argv, dataset="msrvtt-qa"), [], MSQA),
        "avst/main_avst.py": (avst.main_avst.build_parser, avst.main_avst.main, [], AVST),
        "avst/main_baseline.py": (avst.main_avst.build_parser,
                                  lambda argv: avst.main_avst.main(["--model", "baseline", *argv]),
                                  ["--model", "baseline"], AVST),
        "grounding_gen/main_grd_gen.py": (grounding_gen.main_grd_gen.build_parser, grounding_gen.main_grd_gen.main, [],
                                          {**ENGINE, "--batch-size": (COUNT, []), "--epochs": (COUNT, []),
                                           "--lr": (POSITIVE, []), "--num_workers": (COUNT0, [])}),
        "grounding_gen/main_grd_gen_vis.py": (grounding_gen.main_grd_gen_vis.build_parser,
                                              grounding_gen.main_grd_gen_vis.main, ["--checkpoint", "c.pt"],
                                              {"--max-videos": (COUNT, []), "--frames": (("int", 0, 9, "[]"), [])}),
        "scripts/answer.py": (answer.build_parser, answer.main,
                              ["--model", "masn", "--checkpoint", "c.pt", "--video", "v.mp4"], ASKING),
        "python -m webdemo": (webdemo.cli.build_parser, webdemo.cli.main, [],
                              {**ASKING, "--port": (("int", 0, 65535, "[]"), []), "--max-mb": (POSITIVE, []),
                               "--max-seconds": (POSITIVE, [])}),
    }
    for dataset, needs in (("tgif-qa", ["--task", "Count"]), ("msvd-qa", []), ("msrvtt-qa", [])):
        out[f"check_data.py {dataset}"] = (
            lambda d=dataset: masn.data.check.build_parser(d),
            lambda argv, d=dataset: check_data.main([d, *argv]), [*needs, "--csv-dir", "q"],
            {"--q_max_length": (COUNT, [])})
    from feat_script.run_recipe import build_parser as recipe_parser

    out["python -m feat_script recipe"] = (recipe_parser, lambda argv: extract(["recipe", *argv]),
                                           ["qa-tiger", "--videos", "v", "--out", "o"], EXTRACTOR)
    for name, flags in EXTRACTORS.items():
        needs = ["--videos", "v", "--out", "o", *(["--stream", "appearance"] if name == "objects" else [])]
        out[f"python -m feat_script {name}"] = (lambda n=name: extractor_parser(extractor_class(n)),
                                                lambda argv, n=name: extract([n, *argv]), needs,
                                                {**EXTRACTOR, **flags})
    return out


COMMANDS = commands()


def _number(kind: str, value: float) -> str:
    return str(int(value)) if kind == "int" else repr(value)


def refused_values(spec: tuple) -> list[str]:
    """Non-finite and non-numeric text, and the first value past each end of the range."""
    kind, low, high, ends = spec
    values = ["nan", "inf", "-inf", "x"] + (["1.5"] if kind == "int" else [])
    step = (lambda v, d: v + d) if kind == "int" else (lambda v, d: math.nextafter(v, d * INF))
    if ends[0] == "[":
        values.append(_number(kind, step(low, -1)))
    else:
        values.append(_number(kind, low))
    if ends[1] == "]":
        values.append(_number(kind, step(high, 1)))
    elif high != INF:
        values.append(_number(kind, high))
    return values


def accepted_values(spec: tuple) -> list[str]:
    """Each end inside the range: a closed end itself, an open end's nearest value inside."""
    kind, low, high, ends = spec
    step = (lambda v, d: v + d) if kind == "int" else (lambda v, d: math.nextafter(v, d * INF))
    values = [_number(kind, low if ends[0] == "[" else step(low, 1))]
    if high != INF:
        values.append(_number(kind, high if ends[1] == "]" else step(high, -1)))
    return values


def exit_status(run: Callable, argv: list[str]) -> int:
    """The exit status a user sees: run_cli's for user errors, the parser's SystemExit for flag errors."""
    try:
        return run_cli(run, argv)
    except SystemExit as stop:
        return stop.code


CASES = [(command, flag) for command, (*_, flags) in COMMANDS.items() for flag in flags]


@pytest.mark.parametrize(("command", "flag"), CASES)
def test_value_out_of_range_is_one_line_and_nothing_is_created(command, flag, tmp_path, monkeypatch, capsys):
    _, run, needs, flags = COMMANDS[command]
    spec, extra = flags[flag]
    monkeypatch.chdir(tmp_path)
    kind, low, high, ends = spec
    shown = f"{ends[0]}{_number(kind, low)}, {'inf' if high == INF else _number(kind, high)}{ends[1]}"
    for value in refused_values(spec):
        status = exit_status(run, [*needs, *extra, f"{flag}={value}"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert status == 2, (command, flag, value, lines)
        assert len(lines) == 1 and lines[0].startswith(f"error: {flag}: "), (command, flag, value, lines)
        assert shown in lines[0], (command, flag, value, lines[0])
        assert not any(tmp_path.iterdir()), (command, flag, value, "created", list(tmp_path.iterdir()))


@pytest.mark.parametrize(("command", "flag"), CASES)
def test_each_closed_end_is_accepted(command, flag):
    parser, _, needs, flags = COMMANDS[command]
    spec, extra = flags[flag]
    for value in accepted_values(spec):
        args = parser().parse_command([*needs, *extra, f"{flag}={value}"])
        dest = parser()._option_string_actions[flag].dest
        parsed = getattr(args, dest)
        assert (parsed[0] if isinstance(parsed, list) else parsed) == float(value), (command, flag, value)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_numeric_flag_has_a_range_and_a_row_here(command):
    """A new numeric flag without a Bounded type, or without its row in this table, fails here."""
    parser, _, _, flags = COMMANDS[command]
    numeric = {a.option_strings[0]: a.type for a in parser()._actions
               if a.option_strings and (a.type in (int, float) or isinstance(a.type, Bounded))}
    assert not [f for f, t in numeric.items() if t in (int, float)], f"{command}: flags without a range"
    assert set(numeric) == set(flags), f"{command}: table {sorted(flags)} vs parser {sorted(numeric)}"


# -- the range type itself ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "ok"), [("1e-300", True), ("0", False), ("-0.0", False), ("nan", False),
                                          ("inf", False), ("-inf", False), ("1e999", False), ("", False)])
def test_positive_float_boundaries(text, ok):
    if ok:
        assert positive_float(text) == float(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError, match=r"give a number in \(0, inf\)"):
            positive_float(text)


def test_closed_and_open_ends_differ_by_one_step():
    unit_closed, unit_open = Bounded(float, 0, 1), Bounded(float, 0, 1, open_low=True, open_high=True)
    assert unit_closed("0") == 0 and unit_closed("1") == 1
    for text in ("0", "1", repr(math.nextafter(0, -1)), repr(math.nextafter(1, 2))):
        with pytest.raises(argparse.ArgumentTypeError):
            unit_open(text)
    assert unit_open(repr(math.nextafter(0, 1))) > 0 and unit_open(repr(math.nextafter(1, 0))) < 1
    byte = Bounded(int, 0, 255)
    assert byte("0") == 0 and byte("255") == 255
    for text in ("-1", "256", "2.0", "1e2"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"give an integer in \[0, 255\]"):
            byte(text)


# -- flags the user gave, and flags without effect ---------------------------------------------------------

def _toy() -> CommandParser:
    p = CommandParser(prog="toy")
    p.add_argument("--mode", choices=["train", "test"], default="train")
    p.add_argument("--lr", type=positive_float, default=1e-4)
    p.add_argument("--tags", action="append", default=None)
    only_when(p, ["--lr"], lambda a: a.mode == "train", "with --mode test")
    return p


def test_given_is_what_the_command_line_names_even_at_the_default_value():
    args = _toy().parse_command(["--lr", "1e-4", "--tags", "a"])
    assert given(args) == {"lr", "tags"} and "given" not in vars(args)
    assert given(_toy().parse_command([])) == frozenset()
    with pytest.raises(SystemExit):
        _toy().parse_command(["--mode", "test", "--lr", "1e-4"])  # the default's value, but given: refused
    assert _toy().parse_args(["--mode", "test", "--lr", "1e-4"]).lr == 1e-4  # parse_args alone applies no rule


MODE_REFUSALS = [
    ("masn/main.py", ["--test", "--lr", "0.0001"], "--lr", "--test"),
    ("masn/main.py", ["--test", "--hidden_size", "16"], "--hidden_size", "--test"),
    ("masn/main.py", ["--test", "--resume"], "--resume", "--test"),
    ("masn/main.py", ["--checkpoint", "x.pth"], "--checkpoint", "training"),
    ("masn/main.py", ["--save_path", "s"], "--save_path", "--select test"),
    ("masn/main.py", ["--save"], "--save", "--select test"),
    ("masn/main.py", ["--test", "--checkpoint", "c.pth", "--save"], "--save", "--select test"),
    ("masn/main.py", ["--ablation", "spatial"], "--ablation", "never reads it"),
    ("masn/main.py", ["--glove", "g.txt", "--vc_dir", "v"], "--vc_dir", "--glove"),
    ("masn/main_msvd.py", ["--val_ratio", "0.2"], "--val_ratio", "MSVD-QA"),
    ("avst/main_avst.py", ["--mode", "test", "--lr", "0.0001"], "--lr", "--mode test"),
    ("avst/main_avst.py", ["--mode", "test", "--epochs", "3"], "--epochs", "--mode test"),
    ("avst/main_avst.py", ["--mode", "test", "--resume"], "--resume", "--mode test"),
    ("avst/main_avst.py", ["--mode", "test", "--log-interval", "10"], "--log-interval", "--mode test"),
    ("avst/main_avst.py", ["--heatmaps", "2"], "--heatmaps", "training"),
    ("avst/main_avst.py", ["--weights", "w.pt"], "--weights", "training"),
    ("avst/main_avst.py", ["--mode", "test", "--frames-dir", "f"], "--frames-dir", "--heatmaps"),
    ("avst/main_avst.py", ["--checkpoint", "avst"], "--checkpoint", "--model_save_dir"),
    ("avst/main_avst.py", ["--packed", "p", "--audio_dir", "a"], "--audio_dir", "--packed"),
    ("avst/main_avst.py", ["--no-grounding-init", "--pretrained-grounding", "g.pt"], "--pretrained-grounding",
     "--no-grounding-init"),
    ("avst/main_baseline.py", ["--pretrained-grounding", "g.pt"], "--pretrained-grounding", "stage-1"),
    ("grounding_gen/main_grd_gen.py", ["--packed", "p", "--audio_dir", "a"], "--audio_dir", "--packed"),
    ("grounding_gen/main_grd_gen_vis.py", ["--checkpoint", "c", "--videos", "v", "--max-videos", "2"],
     "--max-videos", "--videos"),
    ("python -m feat_script frames", ["--videos", "v", "--out", "o", "--seconds", "5"], "--seconds", "fixed60"),
    ("python -m feat_script frames", ["--videos", "v", "--out", "o", "--seed", "3"], "--seed", "--random-init"),
    ("python -m feat_script resnet", ["--videos", "v", "--out", "o", "--masn", "--store", "npy"], "--store", "--masn"),
    ("python -m feat_script resnet", ["--videos", "v", "--out", "o", "--masn", "--seconds", "5"], "--seconds",
     "fixed60"),
    ("python -m feat_script r2plus1d", ["--videos", "v", "--out", "o", "--clip-stride", "2"], "--clip-stride",
     "--clip-len 1"),
    ("python -m feat_script vggish", ["--videos", "v", "--out", "o", "--recipe", "standard", "--num-secs", "5"],
     "--num-secs", "standard"),
    ("python -m feat_script vggish", ["--videos", "v", "--out", "o", "--no-quantize"], "--no-quantize", "--pca"),
    ("python -m feat_script objects", ["--videos", "v", "--out", "o", "--stream", "appearance", "--boxes", "b.h5"],
     "--boxes", "appearance"),
    ("python -m feat_script objects", ["--videos", "v", "--out", "o", "--stream", "motion", "--boxes", "b.h5",
                                       "--det-min-size", "64"], "--det-min-size", "--boxes"),
    ("check_data.py music-avqa", ["--json-file", "j.json", "--packed", "p", "--audio_dir", "a"], "--audio_dir",
     "--packed"),
    ("check_data.py tgif-qa", ["--task", "Count", "--csv-dir", "q", "--packed", "p", "--feat_dir", "f"], "--feat_dir",
     "--packed"),
    ("python -m feat_script recipe", ["qa-tiger", "--videos", "v", "--out", "o", "--seed", "3"], "--seed",
     "--random-init"),
    ("python -m feat_script recipe", ["qa-tiger", "--videos", "v", "--out", "o", "--prompts", "p.json"], "--prompts",
     "tspm"),
    ("scripts/answer.py", ["--model", "avst", "--checkpoint", "c", "--video", "v", "--num-clips", "4"],
     "--num-clips", "--model avst"),
    ("scripts/answer.py", ["--model", "masn", "--checkpoint", "c", "--video", "v", "--values", "x"],
     "--values", "--model masn"),
]


def _run_of(command: str) -> Callable:
    if command == "check_data.py music-avqa":
        check_data = _script("check_data")
        return lambda argv: check_data.main(["music-avqa", *argv])
    return COMMANDS[command][1]


@pytest.mark.parametrize(("command", "argv", "flag", "why"), MODE_REFUSALS)
def test_flag_without_effect_is_refused(command, argv, flag, why, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert exit_status(_run_of(command), argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}: no effect") and why in lines[0], lines
    assert not any(tmp_path.iterdir())


def test_masn_save_is_accepted_where_the_threshold_checkpoints_are_written():
    from masn.main import parse_args

    assert parse_args(["--task", "Count", "--select", "test", "--save"]).save is True


# -- the originals' --gpu: given effect as --device cuda:N -----------------------------------------------------

@pytest.mark.parametrize("command", ["avst/main_avst.py", "grounding_gen/main_grd_gen.py"])
def test_gpu_index_becomes_the_device(command):
    parser = COMMANDS[command][0]()
    assert parser.parse_command(["--gpu", "1"]).device == "cuda:1"
    assert parser.parse_command(["--gpu", " 0"]).device == "cuda:0"  # the originals' "0, 1" style spacing
    assert parser.parse_command(["--gpu", "2", "--device", "cuda:2"]).device == "cuda:2"  # agreeing: fine
    assert parser.parse_command([]).device == "auto"


@pytest.mark.parametrize(("argv", "message"), [
    (["--gpu", "0, 1"], "error: --gpu: '0, 1' names 2 GPUs; one process uses one GPU: launch torchrun "
                        "--nproc-per-node 2 for several"),
    (["--gpu", "-1"], "error: --gpu: -1 is out of range; give an integer in [0, inf)"),
    (["--gpu", "x"], "error: --gpu: 'x' is not an integer; give an integer in [0, inf)"),
    (["--gpu", "1", "--device", "cpu"], "error: --gpu 1 and --device cpu name different devices; give one of them"),
    (["--gpu", "1", "--device", "cuda:0"], "error: --gpu 1 and --device cuda:0 name different devices; give one of "
                                           "them"),
])
def test_gpu_refusals(argv, message, capsys):
    parser = COMMANDS["avst/main_avst.py"][0]()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_command(argv)
    assert exit_info.value.code == 2 and capsys.readouterr().err.strip() == message


# -- two flags of one range ------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["python -m feat_script objects", "scripts/answer.py"])
@pytest.mark.parametrize(("sizes", "culprit"), [
    (["--det-max-size", "799"], "--det-max-size 799 is below --det-min-size 800"),
    (["--det-min-size", "1334"], "--det-max-size 1333 is below --det-min-size 1334"),
    (["--det-min-size", "600", "--det-max-size", "599"], "--det-max-size 599 is below --det-min-size 600"),
])
def test_detector_sizes_out_of_order_are_refused(command, sizes, culprit, capsys):
    base = {"python -m feat_script objects": ["--videos", "v", "--out", "o", "--stream", "appearance"],
            "scripts/answer.py": ["--model", "masn", "--checkpoint", "c", "--video", "v", "--question", "q"]}[command]
    with pytest.raises(SystemExit) as exit_info:
        COMMANDS[command][0]().parse_command([*base, *sizes])
    line = capsys.readouterr().err.strip()
    flag = sizes[0] if len(sizes) == 2 else "--det-max-size"
    assert exit_info.value.code == 2 and line.startswith(f"error: {flag}: {culprit};"), line


@pytest.mark.parametrize("command", ["python -m feat_script objects", "scripts/answer.py"])
@pytest.mark.parametrize("sizes", [["--det-max-size", "800"], ["--det-min-size", "1333"]])
def test_detector_sizes_equal_are_accepted(command, sizes):
    base = {"python -m feat_script objects": ["--videos", "v", "--out", "o", "--stream", "appearance"],
            "scripts/answer.py": ["--model", "masn", "--checkpoint", "c", "--video", "v", "--question", "q"]}[command]
    args = COMMANDS[command][0]().parse_command([*base, *sizes])
    assert args.det_min_size <= args.det_max_size


def test_masn_sampling_flag_with_masn_preset_is_accepted():
    from feat_script.base import build_parser
    from feat_script.registry import extractor_class

    args = build_parser(extractor_class("resnet")).parse_command(["--videos", "v", "--out", "o", "--masn",
                                                                  "--num-clips", "2"])
    assert args.num_clips == 2


# -- two flags naming one checkpoint --------------------------------------------------------------------------

def test_avst_weights_beside_another_model_save_dir_is_refused(tmp_path, monkeypatch, capsys):
    from avst.main_avst import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "test.json").write_text("[]")
    common = ["--mode", "test", "--label_test", "test.json", "--packed", "p", "--model_save_dir", "D"]
    assert run_cli(main, [*common, "--weights", "X.pt"]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: --weights X.pt: another checkpoint") and "D/avst.pt" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.json"]
    # naming the same file twice is fine: the error is then the (missing) checkpoint itself
    assert run_cli(main, [*common, "--weights", "D/avst.pt"]) == 2
    line = capsys.readouterr().err.strip()
    assert "another checkpoint" not in line and "D/avst.pt" in line, line


def test_masn_checkpoint_file_beside_save_path_is_refused(tmp_path, monkeypatch, capsys):
    from masn.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "q").mkdir()
    (tmp_path / "Count_1.0.pth").write_bytes(b"")
    argv = ["--test", "--checkpoint", "Count_1.0.pth", "--df_dir", "q", "--feat_dir", "q", "--save_path", "S"]
    assert run_cli(main, argv) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: --checkpoint Count_1.0.pth: a file, so --save_path") and "S/" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Count_1.0.pth", "q"]


# -- --resume with nothing to resume -------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["masn/main.py", "avst/main_baseline.py", "grounding_gen/main_grd_gen.py"])
def test_resume_of_a_run_that_never_ran_is_refused_naming_the_path(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for folder in ("q", "feats/a", "feats/v", "frames"):
        (tmp_path / folder).mkdir(parents=True)
    for name in ("train.json", "val.json"):
        (tmp_path / name).write_text("[]")
    data = {"masn/main.py": ["--df_dir", "q", "--feat_dir", "q", "--vc_dir", "q"],
            "avst/main_baseline.py": ["--vocab-json", "train.json", "--label_train", "train.json", "--label_val",
                                      "val.json", "--audio_dir", "feats/a", "--video_res14x14_dir", "feats/v"],
            "grounding_gen/main_grd_gen.py": ["--label_train", "train.json", "--audio_dir", "feats/a",
                                              "--video_dir", "frames"]}[command]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert run_cli(COMMANDS[command][1], [*data, "--resume", "--run-dir", "runs/never"]) == 2
    line = capsys.readouterr().err.strip()
    assert line == ("error: runs/never/checkpoints/last.pt: nothing to resume (no checkpoint there); drop --resume "
                    "to start a new run, or give the --run_dir / --name of the run to continue"), line
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_resume_refusal_is_the_engines_for_every_trainer(tmp_path):
    from engine.errors import UserError
    from engine.run import check_start

    args = argparse.Namespace(run_dir=str(tmp_path / "run"), resume=True)
    with pytest.raises(UserError, match=r"run/checkpoints/last\.pt: nothing to resume"):
        check_start(args, "toy")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.pt").write_bytes(b"")
    check_start(args, "toy")  # a checkpoint (and no stored config to compare with): may resume


# -- a default file that is missing ----------------------------------------------------------------------------

def test_missing_default_file_names_its_flag_and_how_to_give_another(tmp_path, monkeypatch, capsys):
    from avst.main_avst import main

    monkeypatch.chdir(tmp_path)
    assert run_cli(main, ["--mode", "train"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: data/json/avqa-train.json: no such file; it is the default of --vocab-json: pass --vocab-json FILE "
        "to use another")
    # the same path given explicitly is the user's own: the reader reports it, without talk of a default
    given_paths = ["--label_train", "t.json", "--label_val", "v.json", "--audio_dir", "a", "--video_res14x14_dir", "v"]
    assert run_cli(main, ["--mode", "train", "--vocab-json", "data/json/avqa-train.json", *given_paths]) == 2
    line = capsys.readouterr().err.strip()
    assert "data/json/avqa-train.json" in line and "default" not in line, line
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("command", "argv", "flag", "kind"), [
    ("masn/main.py", [], "--df_dir", "folder"),
    ("avst/main_avst.py", ["--mode", "test"], "--label_test", "file"),
    ("grounding_gen/main_grd_gen.py", [], "--label_train", "file"),
    ("grounding_gen/main_grd_gen_vis.py", ["--checkpoint", "c.pt", "--audio_dir", ".", "--video_dir", "."],
     "--label-json", "file"),
])
def test_every_trainer_names_the_flag_of_a_missing_default(command, argv, flag, kind, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli(COMMANDS[command][1], argv) == 2
    line = capsys.readouterr().err.strip()
    assert f"no such {kind}; it is the default of {flag}: pass {flag} {kind.upper()}" in line, line


# -- as a user runs them -----------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize(("script", "argv", "flag"), [
    ("masn/main.py", ["--lr", "-1"], "--lr"),
    ("avst/main_avst.py", ["--gamma=-inf"], "--gamma"),
    ("avst/main_avst.py", ["--gamma", "-1"], "--gamma"),
])
def test_end_to_end_one_line_and_nothing_created(script, argv, flag, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / script), *argv], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and flag in lines[0], proc.stderr[-2000:]
    assert not any(tmp_path.iterdir())
