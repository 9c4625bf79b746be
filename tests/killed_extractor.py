"""Run an extractor CLI that SIGKILLs itself right after its N-th stored video (the resume test's crash).

    python tests/killed_extractor.py N feat_script.extract_resnet:ResNetGlobal [extractor flags...]

The kill comes from outside the pipeline's code: the store's ``write`` is wrapped here, so the
process dies exactly as a killed job would, between two videos, with nothing flushed or merged.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

from feat_script.base import Extractor, main


def _kill_after(limit: int) -> None:
    """Wrap the ``write`` of the store each run makes so that the ``limit``-th video ends the process."""
    make_store = Extractor.make_store

    def make_killing_store(self, out, kind):
        store = make_store(self, out, kind)
        write, written = store.write, []

        def write_then_maybe_die(video_id, payload):
            write(video_id, payload)
            written.append(video_id)
            if len(written) >= limit:
                os.kill(os.getpid(), signal.SIGKILL)

        store.write = write_then_maybe_die
        return store

    Extractor.make_store = make_killing_store


if __name__ == "__main__":
    limit, target, *argv = sys.argv[1:]
    module, cls_name = target.split(":")
    _kill_after(int(limit))
    raise SystemExit(main(getattr(importlib.import_module(module), cls_name), argv))
