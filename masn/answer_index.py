"""Answer indices (FrameQA, MSVD-QA, MSRVTT-QA): deterministic orders, a JSON file format, a converter.

The original's FrameQA order came from ``list(set(answers))`` and so changed with PYTHONHASHSEED;
ours is most frequent first, ties by string. MSVD/MSRVTT keep the original's ``value_counts`` order
(most frequent first, ties by first appearance). The authors' ``ans_to_index_FrameQA.pkl`` can be
turned into our JSON with ``python -m masn.answer_index IN.pkl OUT.json``: it is read by an unpickler
that refuses every global, so a hostile file cannot run code (a plain ``{answer: index}`` needs none).
"""
from __future__ import annotations

import hashlib
import json
import pickle
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from engine.cli import CommandParser, accept_both_spellings
from engine.errors import UserError, run_cli
from engine.files import atomic_write_text


class AnswerIndexError(UserError, ValueError):
    """An answer-index file that cannot be used."""


class _PlainUnpickler(pickle.Unpickler):
    """Builds only what pickle's own opcodes make (dict, list, str, int, ...): every global, and so every
    class or function a hostile file could name to run code, is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: an answer index holds only "
                                     "strings and integers")


def frameqa_order(answers: Iterable[str]) -> list[str]:
    counts = Counter(str(a) for a in answers)
    return sorted(counts, key=lambda a: (-counts[a], a))


def top_k_order(answers: Iterable[str], k: int) -> list[str]:
    """``Series.value_counts().index[:k]`` with ties broken by first appearance (made explicit)."""
    counts = Counter(str(a) for a in answers)
    return sorted(counts, key=lambda a: -counts[a])[:k]


def answers_sha256(answers: list[str]) -> str:
    return hashlib.sha256("\n".join(answers).encode("utf-8")).hexdigest()


def save_answer_index(path: Path, answers: list[str]) -> None:
    atomic_write_text(path, json.dumps({"answers": answers, "sha256": answers_sha256(answers)}, indent=0))


def load_answer_index(path: Path) -> list[str]:
    """Answers in class order from ``{"answers": [...]}`` (or a bare JSON list)."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise AnswerIndexError(f"answer-index file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnswerIndexError(f"{path}: not a JSON answer index ({e}); convert a pickle with "
                               "`python -m masn.answer_index IN.pkl OUT.json`") from None
    answers = obj.get("answers") if isinstance(obj, dict) else obj
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise AnswerIndexError(f"{path}: expected a non-empty list of answer strings under 'answers'")
    if len(set(answers)) != len(answers):
        raise AnswerIndexError(f"{path}: the answer list has duplicates")
    return answers


def answers_from_ans2idx(ans2idx: dict, source: str) -> list[str]:
    """Class-ordered list from an ``{answer: index}`` dict with indices 0..n-1."""
    if not isinstance(ans2idx, dict) or not ans2idx:
        raise AnswerIndexError(f"{source}: expected a non-empty {{answer: index}} dict")
    by_index = {int(i): str(a) for a, i in ans2idx.items()}
    if sorted(by_index) != list(range(len(ans2idx))):
        raise AnswerIndexError(f"{source}: indices are not exactly 0..{len(ans2idx) - 1}")
    return [by_index[i] for i in range(len(by_index))]


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(description="Convert the authors' ans_to_index_<Task>.pkl to JSON.")
    parser.add_argument("pickle", type=Path)
    parser.add_argument("out", type=Path)
    args = accept_both_spellings(parser).parse_command(argv)
    with open(args.pickle, "rb") as f:
        try:
            ans2idx = _PlainUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
            raise AnswerIndexError(f"{args.pickle}: not a plain pickled {{answer: index}} dict ({err})") from None
    answers = answers_from_ans2idx(ans2idx, str(args.pickle))
    save_answer_index(args.out, answers)
    print(f"wrote {len(answers)} answers to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
