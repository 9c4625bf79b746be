"""The commands the documentation shows, read from its code blocks, and the parser each one meets.

A command is found in a ```bash / ```sh / ```shell / ```console block; ``\\`` continues a line, ``#``
starts a comment, ``$ `` prompts are dropped. Each command is named by its entry point: a make
target, a script (``python masn/main.py``, also under ``torchrun`` or after ``cd DIR &&``), a module
(``python -m feat_script NAME``) or an installed command (``avqa-masn``). Commands of other programs
(pip, apt-get, git, curl, ...) are not ours and are left out.
"""
from __future__ import annotations

import argparse
import contextlib
import re
import runpy
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\s*$")
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}
PYTHONS = {"python", "python3", str(Path(sys.executable).name)}
WRAPPERS = {"srun", "env", "time", "nohup"}  # they start the command that follows their options
NOT_OURS = {"pip", "apt-get", "sudo", "git", "curl", "jq", "ffmpeg", "ffprobe", "cd", "export", "ls", "cat", "wget",
            "sbatch", "nvidia-smi", "mkdir", "cp", "mv", "rm", "tar", "unzip", "echo", "for", "do", "done", "open",
            "xdg-open", "tensorboard", "pytest", "source", "ln", "du", "head", "tail", "sort", "uniq", "grep",
            "docker", "conda"}


@dataclass(frozen=True)
class Command:
    """One documented command: where it is written, and how it starts our code."""

    source: str  # "README.md:42"
    text: str
    kind: str  # make | script | module | console | invalid (target says why)
    target: str  # make target, script path (repo-relative), module name, or console-script name
    argv: tuple[str, ...]  # the arguments after the target

    @property
    def key(self) -> str:
        """What names the entry point: ``make demo``, ``masn/main.py``, ``-m feat_script resnet``."""
        if self.kind == "make":
            return f"make {self.target}"
        if self.kind == "module" and self.target == "feat_script" and self.argv:
            return f"-m feat_script {self.argv[0]}"
        return self.target if self.kind == "script" else f"-m {self.target}" if self.kind == "module" else self.target


def documents() -> list[Path]:
    """README.md, every package README and every docs page."""
    found = [ROOT / "README.md", *sorted(ROOT.glob("*/README.md")), *sorted((ROOT / "docs").rglob("*.md"))]
    return [p for p in found if p.is_file() and ".venv" not in p.parts]


def shell_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, logical line) of every shell code block, continuations joined, prompts dropped."""
    inside, pending, start = False, "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fence = FENCE.match(line.strip())
        if fence:
            inside = not inside and fence.group(1) in SHELL_BLOCKS
            pending = ""
            continue
        if not inside:
            continue
        text = line.strip()
        if text.startswith("$ "):
            text = text[2:]
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        if _open_quote(pending + text):  # a quoted argument that spans lines (a JSON body)
            pending += text + "\n"
            continue
        full, pending = (pending + text).strip(), ""
        if full:
            yield start, full


def _open_quote(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return True
    return False


def parse_command(source: str, line: str) -> Command | None:
    """The entry point of one shell line, or None when it runs none of ours."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as err:
        return Command(source, line, "invalid", f"not a shell line ({err})", ())
    if "&&" in tokens:  # `cd masn && python main.py`: the script is relative to that folder
        cut = tokens.index("&&")
        folder = tokens[1] if tokens[:1] == ["cd"] and cut == 2 else ""
        tokens = tokens[cut + 1:]
    else:
        folder = ""
    if tokens and re.fullmatch(r"[A-Za-z_]\w*=\$\(.*", tokens[0], re.S):  # head=$(scontrol ...): plumbing
        return None
    while tokens and (re.fullmatch(r"[A-Za-z_]\w*=.*", tokens[0], re.S) or tokens[0] in WRAPPERS):
        # CUDA_VISIBLE_DEVICES=0 python ..., head=$(...), srun [options] torchrun ...
        wrapper, tokens = tokens[0] in WRAPPERS, tokens[1:]
        while wrapper and tokens and tokens[0].startswith("-"):
            tokens = tokens[1:]
    tokens = [t for t in tokens if t != "..."]  # an elision in prose, not an argument
    if not tokens:
        return None
    head, rest = tokens[0], tokens[1:]
    if head == "make":
        targets = [t for t in rest if not t.startswith("-") and "=" not in t]
        return Command(source, line, "make", targets[0] if targets else "", tuple(rest))
    if head == "torchrun":
        scripts = [i for i, t in enumerate(rest) if t.endswith(".py")]
        if not scripts:
            return None
        return Command(source, line, "script", _script(folder, rest[scripts[0]]), tuple(rest[scripts[0] + 1:]))
    if head in PYTHONS:
        if rest[:1] == ["-m"]:
            if rest[1] in {"pytest", "pip", "venv", "ruff"}:
                return None
            return Command(source, line, "module", rest[1], tuple(rest[2:]))
        if rest and rest[0].endswith(".py"):
            return Command(source, line, "script", _script(folder, rest[0]), tuple(rest[1:]))
        return None
    if head in console_scripts():
        return Command(source, line, "console", head, tuple(rest))
    if head.split("/")[-1] in NOT_OURS or head.startswith(("./", "/")) or head in {"bash", "sh"}:
        return None
    return Command(source, line, "invalid", f"unknown program {head!r} (add it to NOT_OURS in "
                   "tests/doc_commands.py if it is not ours)", ())


def _script(folder: str, script: str) -> str:
    path = (Path(folder) / script) if folder else Path(script)
    return path.as_posix()


def commands(paths: list[Path] | None = None) -> list[Command]:
    found = []
    for path in documents() if paths is None else paths:
        for number, line in shell_lines(path):
            command = parse_command(f"{path.relative_to(ROOT)}:{number}", line)
            if command is not None:
                found.append(command)
    return found


def console_scripts() -> dict[str, str]:
    """Installed command -> ``module:function`` from pyproject's [project.scripts]."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]  # tomllib needs Python 3.11
    return dict(re.findall(r'^([\w-]+)\s*=\s*"([\w.:]+)"', section, re.M))


def make_targets() -> set[str]:
    """Targets the Makefile defines (``name:`` at the start of a line)."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^([a-z][\w-]*)\s*:(?!=)", text, re.M)}


class Parsed(BaseException):
    """Raised from inside the entry point once its parser has read the documented arguments."""

    def __init__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, extra: list[str]) -> None:
        super().__init__(parser.prog)
        self.parser, self.namespace, self.extra = parser, namespace, extra


def parse_as_documented(command: Command, monkeypatch) -> Parsed:
    """Start the command's entry point in this process and stop it once its parser has read the arguments.

    The parser is the entry point's own (whatever builds it): the first ``parse_known_args`` call that
    reads the documented arguments (all but a dispatcher's first word, or after a wrapper's own) is
    answered, and nothing after it runs. A parser error is a SystemExit(2) with its message on stderr.
    """
    argv = list(command.argv)
    original = argparse.ArgumentParser.parse_known_args

    def intercept(self, args=None, namespace=None):
        given = sys.argv[1:] if args is None else list(args)
        namespace, extra = original(self, given, namespace)
        # argv[1:]: a dispatcher took the first word (feat_script NAME, check_data); a longer list ending
        # in argv: a wrapper put its own flags first (main_baseline.py: --model baseline)
        if given == argv[1:] or given[len(given) - len(argv):] == argv:
            raise Parsed(self, namespace, extra)
        return namespace, extra

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", intercept)
    with contextlib.suppress(SystemExit):
        try:
            _start(command, argv, monkeypatch)
        except Parsed as parsed:
            return parsed
    raise AssertionError(f"{command.source}: {command.key} ended without parsing its arguments: {command.text}")


def _start(command: Command, argv: list[str], monkeypatch) -> None:
    if command.kind == "script":
        script = ROOT / command.target
        monkeypatch.setattr(sys, "argv", [str(script), *argv])
        runpy.run_path(str(script), run_name="__main__")
    elif command.kind == "module":
        monkeypatch.setattr(sys, "argv", [command.target, *argv])
        runpy.run_module(command.target, run_name="__main__", alter_sys=True)
    elif command.kind == "console":
        module, function = console_scripts()[command.target].split(":")
        monkeypatch.setattr(sys, "argv", [command.target, *argv])
        getattr(import_module(module), function)()
    else:
        raise AssertionError(f"{command.source}: {command.kind} commands are not parsed: {command.text}")
