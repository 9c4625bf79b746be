"""One rule for every command line: a user error is one short line on stderr and exit status 2.

Every error a user can cause and fix (a missing or malformed file, a bad flag value, a checkpoint of
another model) is a ``UserError``; the message names the file and says what to do. Anything else
is a bug in this repository and keeps its traceback. Entry points wrap their ``main`` with
``run_cli`` instead of catching errors themselves.
"""
from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from typing import Any

EXIT_USER_ERROR = 2
MAX_MESSAGE_CHARS = 400


class UserError(Exception):
    """Bad input or environment the user can fix; the message says which file and what to do."""


def short(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """One line of at most ``limit`` characters: long echoes of user input are cut, not printed whole."""
    line = " ".join(str(message).split())
    return line if len(line) <= limit else line[: limit - 25] + f" ... ({len(line)} chars)"


def _worker_message(text: str) -> str:
    """A DataLoader worker's error arrives with the worker's traceback in its text: keep the message."""
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    name, sep, message = last.partition(": ")
    return message if sep and name.replace(".", "").replace("_", "").isalnum() else last


def _as_user_error(err: BaseException) -> str | None:
    """The one-line message for errors that are the user's environment, not our bug; else None."""
    if isinstance(err, UserError):
        return _worker_message(str(err))
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{err.filename or 'output'}: no space left on the device; free some space or choose another folder"
    if isinstance(err, (PermissionError, IsADirectoryError, NotADirectoryError, FileNotFoundError, FileExistsError)):
        where = err.filename if err.filename is not None else ""
        return f"{where}: {err.strerror or err}".lstrip(": ")
    return None


def run_cli(main: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Call ``main``; a user error prints ``error: <message>`` on one line and returns 2.

    ``main``'s integer result is returned as the exit status; any other result counts as success.
    """
    try:
        result = main(*args, **kwargs)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - sorted into user errors and bugs below
        message = _as_user_error(err)
        if message is None:
            raise
        print(f"error: {short(message)}", file=sys.stderr)
        return EXIT_USER_ERROR
    return result if isinstance(result, int) else 0
