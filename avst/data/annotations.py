"""MUSIC-AVQA annotation records: parsing, template filling and question types.

The original ``data/json`` files, the ``json_update`` ones, MUSIC-AVQA v2.0 and MUSIC-AVQA-R share one
record format (seven keys in the original files): ``type`` is a *string* holding a list literal,
``templ_values`` a string holding one (v2.0 also stores plain lists), the answer key is spelled ``anser``.
v2.0 records may lack ``question_id`` (or hold ``null``; QA-TIGER's copies hold floats such as
``47859.0``) and ``question_deleted``, and carry extra keys (``audio_instrument``, ``unmatch_audio``,
``video_instrument``, ``person``), which are ignored. A record without a ``question_id`` (absent or
``null``) gets ``-(its 1-based position in the file)``: unique, never equal to a real id (those are
>= 0), the same on every read of the same file; file order is kept.

Tokenisation follows the original dataloaders to the letter (``net_grd_avst/dataloader_avst.py``): strip
trailing spaces, split on single spaces, drop the last character of the last token ('?' or the full-width
'？'), then replace each token containing '<' by the next filler. A question without any placeholder keeps
its words whatever ``templ_values`` holds (MUSIC-AVQA-R's rephrased questions are already filled in, as
its loader assumes). The 14-token limit is checked when a question is encoded (``Vocab``), not here.
"""
from __future__ import annotations

import ast
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError, short

MAX_LEN = 14
PAD = "<pad>"
RECORD_KEYS = ("video_id", "type", "question_content", "templ_values", "anser")  # required
KNOWN_KEYS = (*RECORD_KEYS, "question_id", "question_deleted")

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
    except (ValueError, SyntaxError, RecursionError, MemoryError) as err:  # the last two: absurdly nested input
        raise AnnotationError(f"{where}: {what} is not a list literal: {short(repr(text), 80)} "
                              f"({type(err).__name__})") from None
    if not isinstance(value, list):
        raise AnnotationError(f"{where}: {what} must be a list, got {text!r}")
    return value


def question_tokens(content: str, templ_values: list[str], where: str,
                    max_len: int | None = MAX_LEN) -> list[str]:
    """Tokens of a filled question exactly as the original dataloaders make them (no padding)."""
    tokens = content.rstrip().split(" ")
    tokens[-1] = tokens[-1][:-1]
    n_slots = sum("<" in tok for tok in tokens)
    if n_slots != len(templ_values) and n_slots:
        raise AnnotationError(
            f"{where}: {n_slots} placeholder(s) in {content!r} but {len(templ_values)} filler(s) "
            f"{templ_values!r}")
    fillers = iter(templ_values)
    tokens = [str(next(fillers)) if "<" in tok else tok for tok in tokens]
    if max_len is not None and len(tokens) > max_len:
        raise AnnotationError(f"{where}: question has {len(tokens)} tokens, more than {max_len}")
    return tokens


def given_question_id(raw: dict, where: str = "") -> int | None:
    """The record's own ``question_id`` as an int (``47859.0`` and ``"7"`` count), None when absent or
    ``null``; any other value (``"q7"``, ``3.5``, ``true``) is an error."""
    qid = raw.get("question_id")
    if qid is None:
        return None
    if isinstance(qid, float) and qid.is_integer():
        return int(qid)
    if isinstance(qid, bool) or not isinstance(qid, (int, str)) or not str(qid).lstrip("-").isdigit():
        raise AnnotationError(f"{where}: question_id must be an integer, got {qid!r}")
    return int(qid)


def parse_record(raw: dict, source: str | Path, position: int | None = None) -> QARecord:
    """One record; ``position`` (1-based, in the file) names it and derives its id when it has none."""
    shown = raw.get("question_id") if isinstance(raw, dict) else None
    where = f"{source}: " + (f"question_id {shown}" if shown is not None else f"record {position or '?'}")
    if not isinstance(raw, dict):
        raise AnnotationError(f"{where}: record is not an object")
    qid = given_question_id(raw, where)
    missing = [k for k in RECORD_KEYS if k not in raw]
    if qid is None and position is None:
        missing.append("question_id")
    if missing:
        raise AnnotationError(f"{where}: record lacks key(s) {missing}")
    qtype = _literal_list(raw["type"], "type", where)
    if len(qtype) != 2 or tuple(qtype) not in QUESTION_TYPES:
        raise AnnotationError(f"{where}: unknown question type {raw['type']!r}")
    values = _literal_list(raw["templ_values"], "templ_values", where)
    tokens = question_tokens(str(raw["question_content"]), values, where, max_len=None)
    return QARecord(str(raw["video_id"]), qid if qid is not None else -int(position), qtype[0], qtype[1],
                    tuple(tokens), str(raw["anser"]))


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
    """All records of a MUSIC-AVQA JSON file, in file order; the first unusable one is an error, and a file
    without any is refused."""
    records = [parse_record(r, path, i) for i, r in enumerate(load_raw(path), 1)]
    if not records:
        raise AnnotationError(f"{path}: holds no question, so there is nothing to train or evaluate on")
    return records


@dataclass(frozen=True)
class Annotations:
    """A file read leniently: the usable records in file order, and every other one with its reason."""
    path: str
    records: list[QARecord]
    skipped: list[str]            # "<file>: record N / question_id Q: <reason>", one per unusable record
    derived_ids: int              # records whose question_id was absent or unusable (see the docstring)
    extra_keys: dict[str, int]    # keys outside the MUSIC-AVQA schema -> number of records holding them


def load_annotations(path: str | Path) -> Annotations:
    """Every record of a file that can be used; the others are listed with their reason, none is lost."""
    records, skipped, derived, extra = [], [], 0, Counter()
    for i, raw in enumerate(load_raw(path), 1):
        try:
            rec = parse_record(raw, path, i)
        except AnnotationError as err:
            skipped.append(str(err))
            continue
        records.append(rec)
        derived += raw.get("question_id") is None
        extra.update(k for k in raw if k not in KNOWN_KEYS)
    if not records:
        raise AnnotationError(f"{path}: holds no usable question ({len(skipped)} record(s), none usable"
                              + (f"; the first: {skipped[0]})" if skipped else ")"))
    return Annotations(str(path), records, skipped, derived, dict(sorted(extra.items())))


def video_list(records: list[QARecord]) -> list[str]:
    """Distinct video ids in first-appearance order (the original's ``video_list``)."""
    return list(dict.fromkeys(r.video_id for r in records))


def make_record(video_id: str, question_id: int, modality: str, qtype: str, content: str,
                values: list[str], answer: str, deleted: int = 0) -> dict:
    """One raw record in the authors' format (list literals as strings, the ``anser`` key), for writers."""
    return {"video_id": video_id, "question_id": question_id, "type": json.dumps([modality, qtype]),
            "question_content": content, "templ_values": json.dumps(values), "question_deleted": deleted,
            "anser": answer}
