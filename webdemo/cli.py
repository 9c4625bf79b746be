"""Serve the web demo: ``python -m webdemo --avst-checkpoint C --masn-checkpoint C [...]`` (``make web``).

Listens on 127.0.0.1 unless --host says otherwise (the page accepts uploads: keep it local). The
extractor flags are those of scripts/answer.py; --random-init is for the demo checkpoints only, and
the page says so.
"""
from __future__ import annotations

import argparse
import errno
import ipaddress
import signal
import sys
from pathlib import Path

from engine.cli import CommandParser, accept_both_spellings, port, positive_float
from engine.device import resolve_device
from engine.errors import UserError, run_cli
from feat_script.answerer import RANDOM_NOTE, add_extractor_args
from feat_script.streams import bound_heap_growth


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="python -m webdemo", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--avst-checkpoint", type=Path, default=None, help="written by avst/main_avst.py")
    p.add_argument("--masn-checkpoint", type=Path, nargs="+", default=[],
                   help="written by masn/main.py (one per task; the page offers each)")
    p.add_argument("--vocab-json", type=Path, default=None,
                   help="AVST: the official avqa-train.json, for the authors' weights-only avst.pt")
    p.add_argument("--videos", type=Path, default=None, help="a folder whose videos the page offers to pick")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=port, default=7860, help="0: any free port")
    p.add_argument("--max-mb", type=positive_float, default=100, help="largest upload accepted (MB)")
    p.add_argument("--max-seconds", type=positive_float, default=300, help="longest video accepted (seconds)")
    add_extractor_args(p)
    return accept_both_spellings(p)


def make_server(args: argparse.Namespace):
    """The service (checkpoints read, worker started) and its HTTP server, bound but not serving yet."""
    from masn.answer import ExtractorWeights, FeatureSettings
    from webdemo.server import DemoServer
    from webdemo.service import Limits, Recipe, Service, load_models

    for path in [args.avst_checkpoint, *args.masn_checkpoint, args.vocab_json, args.videos]:
        if path is not None and not path.exists():
            raise UserError(f"{path}: no such file or folder")
    recipe = Recipe(args.resnet18_weights, args.vggish_weights,
                    ExtractorWeights(args.resnet152_weights, args.i3d_weights, args.detector_weights,
                                     args.random_init),
                    FeatureSettings(args.num_clips, args.clip_len, args.clip_stride, args.det_min_size,
                                    args.det_max_size), args.random_init, args.amp, args.feature_cache)
    device = resolve_device(args.device)
    models = load_models(args.avst_checkpoint, args.masn_checkpoint, recipe, args.vocab_json, device)
    for m in models:
        if m.error:
            print(f"warning: {m.label}: {m.error} (the page shows this too)", file=sys.stderr)
    service = Service(models, recipe, Limits(int(args.max_mb * 2**20), args.max_seconds), device, args.videos)
    try:
        return DemoServer((args.host, args.port), service)
    except OSError as err:
        service.close()
        if err.errno == errno.EADDRINUSE:
            raise UserError(f"port {args.port} on {args.host} is in use; pass --port N (0: any free port)") from None
        raise UserError(f"cannot listen on {args.host}:{args.port} ({err.strerror or err})") from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_command(argv)
    bound_heap_growth()  # long uploads: freed frame blocks go back to the system (feat_script/streams.py)
    if args.avst_checkpoint is None and not args.masn_checkpoint:
        parser.error("give --avst-checkpoint and/or --masn-checkpoint (make web builds the demo's)")
    if args.random_init:
        print(RANDOM_NOTE, file=sys.stderr, flush=True)
    server = make_server(args)
    if not _loopback(args.host):
        print(f"warning: listening on {args.host}: other machines can reach this page and upload files",
              file=sys.stderr)
    print(f"web demo on {server.url}  (Ctrl-C stops it)", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # kill, too, removes the uploads folder
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
        server.service.close()
    return 0


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def cli() -> int:
    """Console entry point (pyproject [project.scripts]) and ``python -m webdemo``."""
    return run_cli(main)
