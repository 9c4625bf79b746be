"""Command-line options every trainer shares, and the one spelling rule of every command's flags.

Spelling: the originals' flags keep the originals' spelling (``--batch_size``, ``--label_train``; AVST's
``--batch-size``); our own flags are hyphenated (``--run-dir``, ``--random-init``). Every command ends its
parser with ``accept_both_spellings``, so each multi-word flag also answers to its other spelling, which
``--help`` does not show.
"""
from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a batch size or epoch count of 0 would train nothing)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: must be 0 or more")
    return value


def unit_fraction(text: str) -> float:
    """argparse type: a fraction strictly between 0 and 1 (both ends leave a split empty)."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be strictly between 0 and 1")
    return value


def add_engine_args(parser: argparse.ArgumentParser, default_seed: int = 1) -> argparse.ArgumentParser:
    """Add the engine's run, reproducibility, precision and device options to ``parser``."""
    group = parser.add_argument_group("run (engine)")
    group.add_argument("--run-dir", default=None,
                       help="experiment folder (default: runs/<name>); holds config, logs, TensorBoard, checkpoints")
    group.add_argument("--name", default=None, help="experiment name used for the default --run-dir")
    group.add_argument("--seed", type=int, default=default_seed,
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
