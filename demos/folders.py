"""Demo output folders: a demo replaces what an earlier demo wrote, and nothing else.

A demo run starts afresh (the trainers refuse to overwrite a run), so its output folder is emptied
first. Only a folder that carries the demo's marker file, or an empty one, is emptied: a user who
points ``--out`` at a folder of their own gets an error, not a deleted folder.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from engine.errors import UserError

MARKER = ".avqa-demo"


def fresh_folder(folder: Path, flag: str) -> Path:
    """Empty ``folder`` if a demo made it (or it is empty), create it, mark it; refuse any other folder."""
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise UserError(f"{flag} {folder}: not a folder; give a new folder name")
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / MARKER).is_file():
            raise UserError(f"{flag} {folder}: exists and was not written by a demo (no {MARKER} file); "
                            "give a new folder, or remove this one yourself")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("written by an avqa-repro demo; the next demo run replaces this folder\n",
                                 encoding="utf-8")
    return folder
