"""The web demo (python -m webdemo) driven in a real browser: headless Debian chromium through Selenium.

The server runs in this process on 127.0.0.1 and a free port, with the tiny random checkpoints of
test_answer.py and random-init extractors. The browser uploads a generated 3-second video, asks AVST
(a template with a drop-down slot) and MASN, and meets three bad inputs. The AVST answer is checked
against ``avst.answer.ask`` run here with the same random draws (torch's generator is process-wide).
Without chromium / chromedriver / selenium the browser tests skip, except in CI (CI=true), where
.ci/run installs them and a skip would hide a broken page.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.request
from pathlib import Path

import pytest
import torch

from avst.heatmap import SIZE
from engine.errors import run_cli
from feat_script.synthetic_video import make_video
from tests.test_answer import AVST_WORDS, MASN_ANSWERS, SHAPES, SMALL, write_checkpoints
from webdemo.cli import build_parser, main, make_server
from webdemo.questions import TEMPLATES, templates_for
from webdemo.service import Limits, Recipe, Service, WebError

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,2000")
TEMPLATE = "Is the <Object> in the video always playing?"
WAIT_S = 90


def skip_without_browser() -> None:
    missing = [name for name, found in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not found]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[web]')")
    if missing:
        why = f"{', '.join(missing)} missing (apt-get install chromium chromium-driver, as .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {why}")
        pytest.skip(why)


def server_args(d: Path, checkpoints: dict[str, Path], *extra: str):
    small = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    return build_parser().parse_args(["--avst-checkpoint", str(checkpoints["avst"]), "--masn-checkpoint",
                                      str(checkpoints["masn"]), "--port", "0", "--random-init", "--device", "cpu",
                                      *small, *extra])


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp("web")
    checkpoints = write_checkpoints(d)
    make_video(d / "demo" / "silent.mp4", SHAPES, seconds=3, audio=False)
    server = make_server(server_args(d, checkpoints, "--videos", str(d / "demo")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"url": server.url, "dir": d, "video": make_video(d / "v.mp4", SHAPES, seconds=3), **checkpoints}
    server.shutdown()
    server.server_close()
    server.service.close()


@pytest.fixture(scope="module")
def browser(site):
    skip_without_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={site['dir'] / 'chromium-profile'}")
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    driver.get(site["url"])
    yield driver
    driver.quit()


class Page:
    """The few moves the tests make on the page, by element id."""

    def __init__(self, driver) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select, WebDriverWait

        self.driver, self.by, self.select_cls = driver, By, Select
        self.wait = WebDriverWait(driver, WAIT_S)

    def el(self, element_id: str):
        return self.driver.find_element(self.by.ID, element_id)

    def text(self, element_id: str) -> str:
        return self.el(element_id).text

    def select(self, element_id: str, text: str) -> None:
        self.select_cls(self.el(element_id)).select_by_visible_text(text)

    def upload(self, path: Path) -> None:
        self.el("upload").send_keys(str(path))

    def upload_and_choose(self, path: Path, model: str) -> None:
        """Upload ``path``, wait until the page names it, choose ``model``."""
        self.upload(path)
        self.wait.until(lambda d: path.name in self.text("video-status"))
        self.select("model", model)

    def ask(self) -> str:
        """Click Ask, wait for the answer or the error; the error's text ('' when answered)."""
        self.el("ask").click()
        self.wait.until(lambda d: self.el("result").is_displayed() or self.el("error").is_displayed())
        return self.text("error") if self.el("error").is_displayed() else ""

    def bars(self) -> list[tuple[str, str]]:
        rows = self.driver.find_elements(self.by.CSS_SELECTOR, "#bars .bar-row")
        return [(r.find_element(self.by.CLASS_NAME, "bar-label").text,
                 r.find_element(self.by.CLASS_NAME, "bar-value").text) for r in rows]

    def image_sizes(self, css: str) -> list[dict]:
        """Natural and shown sizes of the loaded images matching ``css``."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(i => ({complete: i.complete, "
            "natural: [i.naturalWidth, i.naturalHeight], shown: [i.clientWidth, i.clientHeight]}))", css)


@pytest.mark.slow
def test_avst_question_in_the_browser_with_heat_maps_and_cache(site, browser):
    from avst.answer import ask

    page = Page(browser)
    page.wait.until(lambda d: page.el("model").text)
    assert "RANDOM weights" in page.text("notice")
    page.upload(site["video"])
    page.wait.until(lambda d: "3.0 s" in page.text("video-status"))
    assert page.text("video-status").startswith("v.mp4: 3.0 s, 160x120, audio track: yes")
    page.select("model", "AVST (MUSIC-AVQA)")
    page.select("template", TEMPLATE)
    slot = page.select_cls(browser.find_element(page.by.CSS_SELECTOR, "#slots select"))
    assert [o.text for o in slot.options] == ["violin"]  # the only instrument the tiny vocabulary knows
    torch.manual_seed(11)  # the server draws its random extractors from this process's generator
    assert page.ask() == ""
    torch.manual_seed(11)
    expected = ask(site["video"], TEMPLATE, ["violin"], site["avst"], random_init=True)
    assert page.text("answer") == expected.answer
    assert page.bars() == [(row["answer"], f"{row['prob']:.4f}") for row in expected.top5]
    heat = page.image_sizes("#heatmaps img.heat")
    assert len(heat) == 10
    assert all(h["complete"] and h["natural"] == [SIZE, SIZE] and h["shown"] == [SIZE, SIZE] for h in heat)
    assert page.image_sizes("#temporal") == [{"complete": True, "natural": [10 * 48, 2 * 48], "shown": [480, 96]}]
    stages = page.text("timings")
    assert "VGGish" in stages and "ResNet-18 14x14" in stages and "computed" in page.text("features-note")
    browser.save_screenshot(str(site["dir"] / "page.png"))

    page.select("template", "How many instruments are sounding in the video?")
    assert page.ask() == ""
    assert "reused from the cache" in page.text("features-note")
    assert "VGGish" not in page.text("timings") and "AVST" in page.text("timings")


@pytest.mark.slow
def test_masn_question_in_the_browser(site, browser):
    page = Page(browser)
    page.upload_and_choose(site["video"], "MASN FrameQA (TGIF-QA)")
    assert not page.el("template-box").is_displayed()
    page.el("question").send_keys("what colour is the car?")
    assert page.ask() == ""
    bars = page.bars()
    probs = [float(p) for _, p in bars]
    assert sorted(a for a, _ in bars) == sorted(MASN_ANSWERS)  # softmax over the 4 answers: all shown
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 5e-4
    assert page.text("answer") == bars[0][0]
    assert not page.el("heat-box").is_displayed()
    assert "Faster R-CNN boxes" in page.text("timings")


@pytest.mark.slow
def test_bad_inputs_show_their_message_on_the_page(site, browser):
    page = Page(browser)
    page.upload_and_choose(site["video"], "AVST (MUSIC-AVQA)")
    page.select("template", "(type your own question in the vocabulary's words)")
    page.el("question").send_keys("Is the violn in the video always playing")
    assert "'violn' (closest known: violin" in page.ask()

    (site["dir"] / "notes.mp4").write_text("not a video")
    page.upload(site["dir"] / "notes.mp4")
    page.wait.until(lambda d: page.el("error").is_displayed() and "notes.mp4" in page.text("error"))
    assert "notes.mp4: no video stream" in page.text("error")

    page.select("demo-video", "silent.mp4")
    page.el("pick").click()
    page.wait.until(lambda d: "silent.mp4" in page.text("video-status"))
    page.select("template", TEMPLATE)
    message = page.ask()
    assert "silent.mp4: the video has no audio track, and AVST needs one" in message
    assert "Traceback" not in browser.page_source


def test_templates_follow_the_vocabulary():
    offered = templates_for(AVST_WORDS)
    # by hand: the MUSIC-AVQA templates whose fixed words are all in AVST_WORDS
    assert [t["template"] for t in offered] == ["How many sounding <Object> in the video？", TEMPLATE,
                                                "How many instruments are sounding in the video?"]
    assert offered[1]["slots"] == [{"kind": "Object", "values": ["violin"]}]
    assert len(TEMPLATES) == 33
    # a vocabulary of colours (the raw-video demo's) fills <Object> with its words no template uses
    colours = templates_for(["<pad>", "Is", "the", "red", "in", "video", "always", "playing", "blue"])
    assert colours == [{"template": TEMPLATE, "slots": [{"kind": "Object", "values": ["blue", "red"]}]}]


def test_upload_limits(tmp_path):
    video = make_video(tmp_path / "v.mp4", SHAPES, seconds=3)
    size = video.stat().st_size
    service = Service([], Recipe(), Limits(max_bytes=size - 1, max_seconds=2.5), torch.device("cpu"))
    try:
        with open(video, "rb") as f, pytest.raises(WebError, match="v.mp4: .* MB is over this demo's limit"):
            service.add_upload("v.mp4", f, size)
        service.limits = Limits(max_bytes=size, max_seconds=2.5)
        with open(video, "rb") as f, pytest.raises(WebError, match=r"v.mp4: 3.0 s is over .*--max-seconds"):
            service.add_upload("v.mp4", f, size)
        service.limits = Limits(max_bytes=size, max_seconds=3.5)
        with open(video, "rb") as f:
            assert service.add_upload("dir/v.mp4", f, size).public()["name"] == "v.mp4"
    finally:
        service.close()


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert run_cli(main, ["--avst-checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing.pt'}: no such file or folder"
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2 and "--avst-checkpoint" in capsys.readouterr().err


def post_error(url: str, body: bytes, headers: dict | None = None) -> dict:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers or {}))
    assert err.value.code == 400
    return json.loads(err.value.read())


def test_http_errors_are_json_lines(site):
    ask = site["url"] + "api/ask"
    assert post_error(ask, b'{"video": "nope", "model": "avst"}') == {
        "error": "no video yet (or the server restarted): upload one or pick a demo video"}
    other_site = post_error(ask, b"{}", {"Origin": "http://example.com"})  # another page posting here
    assert other_site["error"].startswith("a page from http://example.com may not use this demo")
