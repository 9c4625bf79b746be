"""MUSIC-AVQA questions as TSPM's text features need them: the filled-in question, its declarative
prompt, and the file name each record's features go to.

- Question: ``question_content`` stripped, split on spaces, the last character ('?') dropped, each word
  holding ``<`` replaced by the next entry of ``templ_values`` (the JSON list it is, as a string in
  MUSIC-AVQA's files), joined with spaces and '?' appended. ``compat`` reproduces TSPM's script,
  which indexed the ``templ_values`` string itself (its characters ``[``, ``"``, ...).
- Prompt: from a template -> prompt table the user gives (a JSON object; TSPM's own table, the
  ``QuestionPromptMatching`` function of its ``scripts/extract_clip_feat/extract_qaPrompt_ViT-L14@336px.py``,
  carries no licence and is not shipped). A prompt names values as ``{0}``, ``{1}``, ``{-1}`` (the last).
  The question is looked up with surrounding spaces removed and a full-width '？' read as '?'; a
  question matching no template has no prompt (a listed failure). ``compat`` reproduces TSPM: exact
  lookup, values with '"', '[', ']' and spaces removed, split on ',', and the prompt "e" (the first
  letter of its "error!") for a question matching no template.
- Key: ``str(question_id)`` (TSPM's and QA-TIGER's file names). Records without one (1,724 of 10,819
  in MUSIC-AVQA v2.0's test_balance.json) are keyed ``nq-`` + the first 16 hex digits of the SHA-256
  of the JSON list ``[video_id, question_content, templ_values]``: stable across runs and files, the
  same for records that ask the same question of the same video (they share features).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from engine.errors import UserError

TSPM_UNMATCHED_PROMPT = "e"  # TSPM's 'error!'[0]
_SLOT = re.compile(r"\{(-?\d+)\}")


class QuestionError(ValueError):
    """A record whose question or prompt cannot be made (listed as a failure, not fatal)."""


def read_json_file(path: Path, flag: str, kind: type) -> Any:
    """The JSON in ``path``, which must be a ``kind``; else one line naming the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{flag} {path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"{flag} {path}: not a JSON file ({err}); pass the file as released") from err
    if not isinstance(data, kind):
        raise UserError(f"{flag} {path}: holds a JSON {type(data).__name__}, expected a {kind.__name__}")
    return data


def read_annotations(path: Path) -> list[dict]:
    """A MUSIC-AVQA annotation file: a list of question records with ``video_id`` and ``question_content``."""
    records = read_json_file(path, "--annotations", list)
    for i, record in enumerate(records):
        if not isinstance(record, dict) or not {"video_id", "question_content", "templ_values"} <= set(record):
            raise UserError(f"--annotations {path}: record {i} lacks video_id / question_content / templ_values")
    return records


def read_prompt_table(path: Path) -> dict[str, str]:
    """The template -> prompt table: a JSON object of strings."""
    table = read_json_file(path, "--prompts", dict)
    bad = [k for k, v in table.items() if not isinstance(v, str)]
    if bad:
        raise UserError(f"--prompts {path}: the prompt of {bad[0]!r} is not a string")
    return table


def template_values(record: dict) -> list[str]:
    """``templ_values`` as the list it encodes."""
    values = record["templ_values"]
    if isinstance(values, str):
        try:
            values = json.loads(values)
        except ValueError as err:
            raise QuestionError(f"templ_values {values!r} is not a JSON list") from err
    if not isinstance(values, list):
        raise QuestionError(f"templ_values {values!r} is not a list")
    return [str(v) for v in values]


def question_key(record: dict) -> tuple[str, bool]:
    """(file name stem, whether it is the record's own question_id)."""
    if record.get("question_id") is not None:
        return str(int(record["question_id"])), True
    content = json.dumps([record["video_id"], record["question_content"], record["templ_values"]], ensure_ascii=False)
    return "nq-" + hashlib.sha256(content.encode()).hexdigest()[:16], False


def question_text(record: dict, compat: bool = False) -> str:
    """The question with its slots filled, '?' at the end (see the module docstring)."""
    words = record["question_content"].rstrip().split(" ")
    words[-1] = words[-1][:-1]
    values = record["templ_values"] if compat else template_values(record)
    slot = 0
    for i, word in enumerate(words):
        if "<" in word:
            if slot >= len(values):
                raise QuestionError(f"question {record['question_content']!r} has more slots than templ_values "
                                    f"{record['templ_values']!r}")
            words[i] = values[slot]
            slot += 1
    return " ".join(words) + "?"


def _tspm_values(record: dict) -> list[str]:
    values = record["templ_values"]
    text = values if isinstance(values, str) else json.dumps(values)
    return text.replace('"', "").replace("[", "").replace("]", "").replace(" ", "").split(",")


def prompt_text(record: dict, table: dict[str, str], compat: bool = False) -> str:
    """The declarative prompt of the record's question template (see the module docstring)."""
    content = record["question_content"]
    if compat:
        if content not in table:
            return TSPM_UNMATCHED_PROMPT
        template, values = table[content], _tspm_values(record)
    else:
        key = content.strip().replace("？", "?")
        if key not in table:
            raise QuestionError(f"question template {content!r} matches no entry of --prompts")
        template, values = table[key], template_values(record)

    def fill(match: re.Match) -> str:
        index = int(match.group(1))
        if not -len(values) <= index < len(values):
            raise QuestionError(f"prompt {template!r} names value {index}; templ_values is {record['templ_values']!r}")
        return values[index]

    return _SLOT.sub(fill, template)
