"""The README's picture of the web page (``make screenshot``): docs/img/web.png, taken in headless chromium.

Serves the page as the browser test does (tiny random checkpoints from benchkit.tiny_checkpoints,
random-init extractors), uploads a generated 12-second video, asks AVST one template question and
saves the whole page at 1280 px. The answer is random, and the page says so. Needs chromium,
chromedriver and the ``[web]`` extra (the error names the command that installs them).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchkit.browser import Page, chromium, missing
from benchkit.tiny_checkpoints import SHAPES, web_argv, write_checkpoints
from engine.cli import CommandParser, accept_both_spellings, positive_int
from engine.errors import UserError, run_cli
from feat_script.synthetic_video import make_video
from webdemo.cli import build_parser as server_parser
from webdemo.cli import make_server
from webdemo.server import serving

QUESTION = "Is the <Object> in the video always playing?"
VIDEO_SECONDS = 12


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("docs/img/web.png"), help="the PNG written (replaced)")
    p.add_argument("--width", type=positive_int, default=1280, help="window width in CSS pixels")
    return accept_both_spellings(p)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_command(argv)
    if args.out.suffix.lower() != ".png":
        raise UserError(f"--out {args.out}: the screenshot is a PNG; give a path ending in .png")
    if args.width < 320:
        raise UserError(f"--width {args.width}: narrower than any phone; give 320 or more")
    if (why := missing()) is not None:
        raise UserError(f"the browser: {why}")
    with tempfile.TemporaryDirectory(prefix="web-screenshot-") as tmp:
        d = Path(tmp)
        video = make_video(d / "demo.mp4", SHAPES, seconds=VIDEO_SECONDS)
        server = make_server(server_parser().parse_command(web_argv(write_checkpoints(d))))
        with serving(server) as url:
            driver = chromium(d / "chromium-profile", args.width)
            try:
                page = Page(driver)
                page.open(url)
                page.use_video(video)
                page.select("model", "AVST (MUSIC-AVQA)")
                page.select("template", QUESTION)
                if error := page.ask():
                    raise UserError(f"the page refused the question: {error}")
                page.screenshot(args.out, args.width)
            finally:
                driver.quit()
    print(f"wrote {args.out} ({args.width} px wide)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
