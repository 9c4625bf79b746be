"""Command-line options every trainer shares, and the rules every command's flags follow.

Spelling: the originals' flags keep the originals' spelling (``--batch_size``, ``--label_train``; AVST's
``--batch-size``); our own flags are hyphenated (``--run-dir``, ``--random-init``). Every command ends its
parser with ``accept_both_spellings``, so each multi-word flag also answers to its other spelling, which
``--help`` does not show.

Values: every numeric flag has a ``Bounded`` type, so a value outside its meaningful range (or NaN, or
infinite) stops the command at parse time, before any folder or file exists. Every command's parser is a
``CommandParser``: its errors are one line (exit status 2), it records which flags the user gave
(``given``), and its ``parse_command`` (what every command's main calls) also refuses a given flag that
has no effect in the chosen mode (``only_when``).
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from engine.errors import EXIT_USER_ERROR, UserError
from engine.reader import INPUTS


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


@dataclass(frozen=True)
class Bounded:
    """argparse type: a finite ``kind`` (int or float) between ``low`` and ``high`` (None: unbounded),
    each end closed unless ``open_low`` / ``open_high``. ``float('nan')`` and ``float('inf')`` parse,
    so non-finite values are refused explicitly."""

    kind: type
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    @property
    def range(self) -> str:
        """The range in interval notation: ``[1, inf)``, ``(0, 1]``."""
        low = "-inf" if self.low is None else _number(self.low)
        high = "inf" if self.high is None else _number(self.high)
        return (f"{'(' if self.open_low or self.low is None else '['}{low}, {high}"
                f"{')' if self.open_high or self.high is None else ']'}")

    @property
    def expected(self) -> str:
        return f"{'an integer' if self.kind is int else 'a number'} in {self.range}"

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.open_low else value >= self.low)
        below = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return above and below

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.expected.split(' in ')[0]}; "
                                             f"give {self.expected}") from None
        if not self.contains(value):
            what = "is not a finite number" if not math.isfinite(value) else "is out of range"
            raise argparse.ArgumentTypeError(f"{text} {what}; give {self.expected}")
        return value


positive_int = Bounded(int, 1)  # batch sizes, epochs, lengths: 0 would do nothing
non_negative_int = Bounded(int, 0)  # worker counts, "every N steps" with 0 = never
seed_int = Bounded(int, 0, 2**32 - 1)  # what numpy's seeding accepts
unit_fraction = Bounded(float, 0, 1, open_low=True, open_high=True)  # a split share: both ends empty a split
positive_float = Bounded(float, 0, open_low=True)  # learning rates, sizes, durations
non_negative_float = Bounded(float, 0)  # weight decay
drop_probability = Bounded(float, 0, 1, open_high=True)  # nn.Dropout's p; 1 would zero every activation
decay_factor = Bounded(float, 0, 1, open_low=True)  # StepLR's gamma: 1 keeps the rate, > 1 would grow it
port = Bounded(int, 0, 65535)  # 0: any free port


class ParsedArgs(argparse.Namespace):
    """The namespace a ``CommandParser`` returns. ``given`` (the dests of the flags on the command line)
    and ``flags`` (dest -> the flag as ``--help`` shows it) are slots, so ``vars(args)``, which becomes a
    run's config.json, holds the settings only."""

    __slots__ = ("given", "flags")


def given(args: argparse.Namespace) -> frozenset[str]:
    """The dests the user gave on the command line (empty for a namespace not made by a CommandParser)."""
    return getattr(args, "given", frozenset())


def flag_of(args: argparse.Namespace, dest: str) -> str:
    """How the user spells the flag of ``dest`` (``--vocab-json`` for ``vocab_json``)."""
    return getattr(args, "flags", {}).get(dest, "--" + dest)


@dataclass(frozen=True)
class _Rule:
    flags: tuple[str, ...]
    applies: Callable[[argparse.Namespace], bool]
    context: str


class CommandParser(argparse.ArgumentParser):
    """The parser of every command: one-line errors, the flags given recorded; ``parse_command`` also
    refuses flags without effect (``parse_args`` alone parses any combination, e.g. to test spellings)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rules: list[_Rule] = []
        self.finishers: list[Callable[[argparse.Namespace], None]] = []

    def error(self, message: str) -> NoReturn:
        """``error: <flag>: <what is wrong>`` on one line and exit 2, instead of argparse's usage block."""
        line = " ".join(message.split())
        self.exit(EXIT_USER_ERROR, f"error: {line.removeprefix('argument ')}\n")

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        argv = sys.argv[1:] if args is None else list(args)
        parsed, extras = super().parse_known_args(argv, ParsedArgs() if namespace is None else namespace)
        if isinstance(parsed, ParsedArgs):
            parsed.given = self._given(argv)
            parsed.flags = {a.dest: a.option_strings[0] for a in self._actions if a.option_strings}
        return parsed, extras

    def parse_command(self, args: Sequence[str] | None = None) -> argparse.Namespace:
        """``parse_args``, then exit 2 on a given flag that has no effect with the others (``only_when``),
        then the finishers (aliases resolved into the flags they stand for)."""
        parsed = self.parse_args(args)
        for rule in self.rules:
            if not rule.applies(parsed):
                self.refuse(parsed, rule.flags, rule.context)
        for finish in self.finishers:
            finish(parsed)
        return parsed

    def _given(self, argv: list[str]) -> frozenset[str]:
        """Parse again with every default suppressed: only the dests on the command line are set."""
        defaults = [(action, action.default) for action in self._actions]
        try:
            for action, _ in defaults:
                action.default = argparse.SUPPRESS
            seen, _ = super().parse_known_args(argv, argparse.Namespace())
        finally:
            for action, default in defaults:
                action.default = default
        return frozenset(vars(seen))

    def refuse(self, args: argparse.Namespace, flags: Iterable[str], context: str) -> None:
        """Exit 2 naming those of ``flags`` the user gave, which have no effect ``context``."""
        table = self._option_string_actions
        bad = [flag for flag in flags if table[flag].dest in given(args)]
        if bad:
            self.error(f"{', '.join(bad)}: no effect {context}; drop {'it' if len(bad) == 1 else 'them'}")


def only_when(parser: argparse.ArgumentParser, flags: Iterable[str], applies: Callable[[argparse.Namespace], bool],
              context: str) -> None:
    """Refuse ``flags`` when given while ``applies(args)`` is false (``context`` says when that is, e.g.
    "with --mode test (training only)"). A plain ArgumentParser (helpers' tests) keeps no rules."""
    if isinstance(parser, CommandParser):
        parser.rules.append(_Rule(tuple(flags), applies, context))


def not_below(parser: argparse.ArgumentParser, low: str, high: str, why: str) -> None:
    """Refuse ``high`` < ``low`` (two numeric flags of one range; ``why`` says what the other order would
    mean), whichever of them the user gave."""
    if not isinstance(parser, CommandParser):
        return
    table = parser._option_string_actions
    low_dest, high_dest = table[low].dest, table[high].dest

    def check(args: argparse.Namespace) -> None:
        lo, hi = getattr(args, low_dest), getattr(args, high_dest)
        if lo is not None and hi is not None and hi < lo:
            culprit = high if high_dest in given(args) or low_dest not in given(args) else low
            parser.error(f"{culprit}: {high} {_number(hi)} is below {low} {_number(lo)}; {why}")

    parser.finishers.append(check)


def default_path_problem(args: argparse.Namespace, dest: str, kind: str = "file") -> str | None:
    """Why the path flag ``dest``, left at its default, cannot be used (no such ``kind``: file or folder),
    worded to say which flag's default it is and how to give another; None when it exists, or when the
    user gave the flag (its reader reports a path the user gave)."""
    value = getattr(args, dest)
    if dest in given(args) or value is None or not hasattr(args, "given"):
        return None
    for path in [value] if isinstance(value, (str, Path)) else value:
        if not (Path(path).is_dir() if kind == "folder" else Path(path).is_file()):
            flag = flag_of(args, dest)
            return f"{path}: no such {kind}; it is the default of {flag}: pass {flag} {kind.upper()} to use another"
    return None


def check_default_path(args: argparse.Namespace, dest: str, kind: str = "file") -> None:
    """Refuse (one line, exit 2 through run_cli) a default path that is not there: ``default_path_problem``."""
    problem = default_path_problem(args, dest, kind)
    if problem:
        raise UserError(problem)


def gpu_index(text: str) -> int:
    """argparse type of the originals' ``--gpu``: one GPU index (the original AVST's default "0, 1" meant
    DataParallel, which this code replaces by one process per GPU)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if len(parts) > 1:
        raise argparse.ArgumentTypeError(f"{text!r} names {len(parts)} GPUs; one process uses one GPU: launch "
                                         f"torchrun --nproc-per-node {len(parts)} for several")
    return Bounded(int, 0)(parts[0] if parts else text)


def add_gpu_flag(parser: CommandParser) -> None:
    """The originals' ``--gpu N``, given effect as ``--device cuda:N``; refused beside a ``--device`` that
    names another device."""
    parser.add_argument("--gpu", type=gpu_index, default=None,
                        help="the originals' spelling of --device cuda:N (one GPU; several: torchrun)")

    def to_device(args: argparse.Namespace) -> None:
        if args.gpu is None:
            return
        wanted = f"cuda:{args.gpu}"
        if "device" in given(args) and args.device != wanted:
            parser.error(f"--gpu {args.gpu} and --device {args.device} name different devices; give one of them")
        args.device = wanted

    parser.finishers.append(to_device)


def add_engine_args(parser: argparse.ArgumentParser, default_seed: int = 1) -> argparse.ArgumentParser:
    """Add the engine's run, reproducibility, precision and device options to ``parser``."""
    group = parser.add_argument_group("run (engine)")
    group.add_argument("--run-dir", default=None,
                       help="experiment folder (default: runs/<name>); holds config, logs, TensorBoard, checkpoints")
    group.add_argument("--name", default=None, help="experiment name used for the default --run-dir")
    group.add_argument("--seed", type=seed_int, default=default_seed,
                       help="seeds python, numpy, torch and DataLoader workers")
    group.add_argument("--deterministic", action="store_true",
                       help="deterministic kernels only (slower; errors on ops without one)")
    group.add_argument("--resume", action="store_true",
                       help="continue from <run_dir>/checkpoints/last.pt (weights, optimizer, RNG, position); refused "
                            "when a setting that changes the result differs from the stored run's")
    group.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off",
                       help="mixed precision (fp16 uses a GradScaler)")
    group.add_argument("--device", default="auto",
                       help="auto (CUDA when available), cpu, cuda (under torchrun: the rank's LOCAL_RANK GPU) "
                            "or cuda:N")
    group.add_argument("--input", choices=INPUTS, default="loader",
                       help="input pipeline: loader (torch's DataLoader: --num_workers processes, pinned memory on "
                            "CUDA) or reader (--num_workers threads reading into a ring of reused pinned buffers; "
                            "see docs/engine.md)")
    group.add_argument("--quiet", action="store_true", help="no progress bars")
    group.add_argument("--save-every-steps", type=non_negative_int, default=0,
                       help="also checkpoint every N optimizer steps inside an epoch (0: only at epoch end)")
    return parser


def other_spelling(flag: str) -> str | None:
    """``--run-dir`` <-> ``--run_dir``; None for a flag with one word or both separators."""
    name = flag[2:] if flag.startswith("--") else ""
    if ("-" in name) == ("_" in name):
        return None
    return "--" + (name.replace("-", "_") if "-" in name else name.replace("_", "-"))


def accept_both_spellings(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Let every multi-word long option also be given in its other spelling (``-`` <-> ``_``).

    The alias is registered in the parser's option table for the same action (so ``required`` and
    ``append`` behave as for the shown spelling) but not in ``action.option_strings``, which is what
    ``--help`` and the error messages print. An abbreviation that matches both spellings of one flag
    (``--batch`` for ``--batch_size``, as the originals' parsers allowed) stays unambiguous.
    """
    table = parser._option_string_actions
    for action in parser._actions:
        for flag in action.option_strings:
            alias = other_spelling(flag)
            if alias is not None:
                table.setdefault(alias, action)
    prefix_matches = parser._get_option_tuples

    def one_match_per_flag(option_string: str) -> list[tuple]:
        found = {}
        for match in prefix_matches(option_string):
            found.setdefault(id(match[0]), match)  # match[0] is the action
        return list(found.values())

    parser._get_option_tuples = one_match_per_flag
    return parser
