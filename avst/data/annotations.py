"""MUSIC-AVQA annotation records: parsing, template filling and question types.

Both the original ``data/json`` files and the ``json_update`` ones share one record format (seven keys per
record): ``type`` and ``templ_values`` are *strings* holding list literals, the answer key is spelled
``anser``. Tokenisation follows the original dataloaders to the letter (``net_grd_avst/dataloader_avst.py``):
strip trailing spaces, split on single spaces, drop the last character of the last token ('?' or the
full-width '？'), then replace each token containing '<' by the next filler.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from engine.errors import UserError

MAX_LEN = 14
PAD = "<pad>"
RECORD_KEYS = ("video_id", "question_id", "type", "question_content", "templ_values", "anser")

# (modality, question type) in the column order of the paper's exp1 table.
QUESTION_TYPES: tuple[tuple[str, str], ...] = (
    ("Audio", "Counting"),
    ("Audio", "Comparative"),
    ("Visual", "Counting"),
    ("Visual", "Location"),
    ("Audio-Visual", "Existential"),
    ("Audio-Visual", "Location"),
    ("Audio-Visual", "Counting"),
    ("Audio-Visual", "Comparative"),
    ("Audio-Visual", "Temporal"),
)
MODALITIES: tuple[str, ...] = ("Audio", "Visual", "Audio-Visual")


class AnnotationError(UserError, ValueError):
    """A record that cannot be used; the message names the file and the question id."""


@dataclass(frozen=True)
class QARecord:
    video_id: str
    question_id: int
    modality: str
    qtype: str
    tokens: tuple[str, ...]
    answer: str


def _literal_list(text: str, what: str, where: str) -> list:
    try:
        value = ast.literal_eval(text) if isinstance(text, str) else text
    except (ValueError, SyntaxError) as err:
        raise AnnotationError(f"{where}: {what} is not a list literal: {text!r} ({err})") from None
    if not isinstance(value, list):
        raise AnnotationError(f"{where}: {what} must be a list, got {text!r}")
    return value


def question_tokens(content: str, templ_values: list[str], where: str) -> list[str]:
    """Tokens of a filled question exactly as the original dataloaders make them (no padding)."""
    tokens = content.rstrip().split(" ")
    tokens[-1] = tokens[-1][:-1]
    n_slots = sum("<" in tok for tok in tokens)
    if n_slots != len(templ_values):
        raise AnnotationError(
            f"{where}: {n_slots} placeholder(s) in {content!r} but {len(templ_values)} filler(s) "
            f"{templ_values!r}")
    fillers = iter(templ_values)
    tokens = [str(next(fillers)) if "<" in tok else tok for tok in tokens]
    if len(tokens) > MAX_LEN:
        raise AnnotationError(f"{where}: question has {len(tokens)} tokens, more than {MAX_LEN}")
    return tokens


def parse_record(raw: dict, source: str | Path) -> QARecord:
    qid = raw.get("question_id", "?") if isinstance(raw, dict) else "?"
    where = f"{source}: question_id {qid}"
    if not isinstance(raw, dict):
        raise AnnotationError(f"{where}: record is not an object")
    missing = [k for k in RECORD_KEYS if k not in raw]
    if missing:
        raise AnnotationError(f"{where}: record lacks key(s) {missing}")
    qtype = _literal_list(raw["type"], "type", where)
    if len(qtype) != 2 or tuple(qtype) not in QUESTION_TYPES:
        raise AnnotationError(f"{where}: unknown question type {raw['type']!r}")
    values = _literal_list(raw["templ_values"], "templ_values", where)
    tokens = question_tokens(str(raw["question_content"]), values, where)
    return QARecord(str(raw["video_id"]), _question_id(raw["question_id"], where), qtype[0], qtype[1],
                    tuple(tokens), str(raw["anser"]))


def _question_id(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).lstrip("-").isdigit():
        raise AnnotationError(f"{where}: question_id must be an integer, got {value!r}")
    return int(value)


def load_raw(path: str | Path) -> list:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path} (MUSIC-AVQA JSONs come from "
                                "github.com/GeWu-Lab/MUSIC-AVQA, data/json or data/json_update)")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(raw, list):
        raise AnnotationError(f"{path}: expected a JSON array of records")
    return raw


def load_records(path: str | Path) -> list[QARecord]:
    """All records of a MUSIC-AVQA JSON file, in file order; a file without any is refused."""
    records = [parse_record(r, path) for r in load_raw(path)]
    if not records:
        raise AnnotationError(f"{path}: holds no question, so there is nothing to train or evaluate on")
    return records


def video_list(records: list[QARecord]) -> list[str]:
    """Distinct video ids in first-appearance order (the original's ``video_list``)."""
    return list(dict.fromkeys(r.video_id for r in records))


def make_record(video_id: str, question_id: int, modality: str, qtype: str, content: str,
                values: list[str], answer: str, deleted: int = 0) -> dict:
    """One raw record in the authors' format (list literals as strings, the ``anser`` key), for writers."""
    return {"video_id": video_id, "question_id": question_id, "type": json.dumps([modality, qtype]),
            "question_content": content, "templ_values": json.dumps(values), "question_deleted": deleted,
            "anser": answer}
