"""The web demo (python -m webdemo) driven in a real browser: headless Debian chromium through Selenium.

The server runs in this process on 127.0.0.1 and a free port, with the tiny random checkpoints of
benchkit.tiny_checkpoints and random-init extractors. The browser uploads a generated 3-second
video, asks AVST (a template with a drop-down slot) and MASN, reloads an answer's link, narrows the
window to a phone's 390 px and meets bad inputs. The AVST answer is checked against
``avst.answer.ask`` run here with the same random draws (torch's generator is process-wide).
Without chromium / chromedriver / selenium the browser tests skip, except in CI (CI=true), where
.ci/run installs them and a skip would hide a broken page.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from avst.data.annotations import question_tokens
from avst.heatmap import SIZE, jet
from benchkit import browser as web_browser
from benchkit.browser import Page, chromium
from benchkit.tiny_checkpoints import AVST_WORDS, MASN_ANSWERS, SHAPES, web_argv, write_checkpoints
from engine.errors import run_cli
from feat_script.synthetic_video import make_video
from webdemo.cli import build_parser, main, make_server
from webdemo.questions import TEMPLATES, templates_for
from webdemo.server import culprit, serving, split_details
from webdemo.service import Limits, Recipe, Service, WebError

TEMPLATE = "Is the <Object> in the video always playing?"
FULL_WIDTH = "How many sounding <Object> in the video？"  # MUSIC-AVQA's own text, full-width "？"
OWN_QUESTION = "(type your own question in the vocabulary's words)"
FFMPEG_TAIL = ("[in#0 @ 0x55dc596a5d00] Error opening input: Invalid data found when processing input | "
               "Error opening input files: Invalid data found when processing input")


def require_browser() -> None:
    """Skip (one line: what to install) without a browser to drive; in CI (CI=true) fail instead."""
    why = web_browser.missing()
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser test: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp("web")
    checkpoints = write_checkpoints(d)
    make_video(d / "demo" / "silent.mp4", SHAPES, seconds=3, audio=False)
    server = make_server(build_parser().parse_args(web_argv(checkpoints, "--videos", str(d / "demo"))))
    with serving(server) as url:
        yield {"url": url, "dir": d, "video": make_video(d / "v.mp4", SHAPES, seconds=3), **checkpoints}


@pytest.fixture(scope="module")
def driver(site):
    require_browser()
    chrome = chromium(site["dir"] / "chromium-profile")
    yield chrome
    chrome.quit()


@pytest.fixture
def page(site, driver):
    """The page, freshly loaded at desktop width."""
    driver.set_window_size(1280, 1000)
    p = Page(driver)
    p.open(site["url"])
    return p


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url) as response:
        return json.loads(response.read())


def figure_times(page: Page) -> list[str]:
    return page.js("return [...document.querySelectorAll('#heatmaps figcaption')].map(c => c.textContent)")


def preview(page: Page) -> dict:
    return page.js("const v = document.getElementById('preview'); return {shown: !v.hidden, src: v.src, "
                   "time: v.currentTime, duration: v.duration, ready: v.readyState}")


@pytest.mark.slow
def test_avst_question_times_preview_permalink_and_phone_width(site, page, tmp_path):
    from avst.answer import ask

    assert "RANDOM weights" in page.text("notice")
    page.use_video(site["video"])
    assert page.text("video-status").startswith("v.mp4: 3.0 s, 160x120, audio track: yes")
    page.wait.until(lambda d: preview(page)["ready"] >= 1)  # the browser plays the server's copy
    shown = preview(page)
    assert shown["shown"] and shown["src"].endswith("/file") and abs(shown["duration"] - 3.0) < 0.1
    page.select("model", "AVST (MUSIC-AVQA)")
    options = page.js("return [...document.getElementById('template').options].map(o => o.text)")
    assert shown_full_width(FULL_WIDTH) in options and not any("？" in o for o in options)
    page.select("template", TEMPLATE)
    slot = page.select_cls(page.driver.find_element(page.by.CSS_SELECTOR, "#slots select"))
    assert [o.text for o in slot.options] == ["violin"]  # the only instrument the tiny vocabulary knows
    torch.manual_seed(11)  # the server draws its random extractors from this process's generator
    assert page.ask() == ""
    torch.manual_seed(11)
    expected = ask(site["video"], TEMPLATE, ["violin"], site["avst"], random_init=True)
    assert page.text("answer") == expected.answer
    assert page.bars() == [(row["answer"], f"{row['prob']:.4f}") for row in expected.top5]
    assert page.js("return document.activeElement.id") == "question"

    # times in seconds of this 3-s video: step 1 is second 0, steps 2..10 repeat its last second
    assert figure_times(page) == ["0–1 s"] + ["2–3 s"] * 9
    header = page.js("return [...document.querySelectorAll('#temporal tr:first-child th')].map(c => c.textContent)")
    assert header == ["second", "0"] + ["2"] * 9
    download = page.el("download")
    saved = get_json(download.get_attribute("href"))  # the JSON the page drew from and offers for download
    weights = [*saved["result"]["temporal_visual"], *saved["result"]["temporal_audio"]]
    assert weights == pytest.approx([*expected.temporal_visual, *expected.temporal_audio], abs=1e-6)
    cells = page.js("return [...document.querySelectorAll('#temporal td')].map(c => +c.textContent)")
    assert cells == pytest.approx(weights, abs=6e-7)  # as many decimals as the two ends need to differ
    legend = (float(page.text("legend-low")), float(page.text("legend-high")))
    assert legend == pytest.approx((min(weights), max(weights)), abs=6e-7) and legend[0] < legend[1]
    # one colour scale for both rows, the spatial maps' JET colours (avst.heatmap.jet)
    scaled = (np.asarray(weights) - min(weights)) / ((max(weights) - min(weights)) or 1)
    shown_colours = page.js("return [...document.querySelectorAll('#temporal td')]"
                            ".map(c => getComputedStyle(c).backgroundColor.match(/[0-9.]+/g).map(Number))")
    assert np.abs(np.asarray(shown_colours) - jet(np.round(scaled * 255).astype(np.uint8))).max() <= 3
    heat = page.image_sizes("#heatmaps img.heat")
    assert len(heat) == 10 and all(h["complete"] and h["natural"] == [SIZE, SIZE] for h in heat)
    page.driver.find_elements(page.by.CSS_SELECTOR, "#heatmaps figcaption button")[1].click()
    assert preview(page)["time"] == pytest.approx(2.5)  # the middle of second 2..3
    stages = page.text("timings")
    assert "VGGish" in stages and "ResNet-18 14x14" in stages and "computed" in page.text("features-note")
    shot = page.screenshot(tmp_path / "web-1280.png", 1280)

    # the link: the address bar names video and answer; a reload shows them again; the JSON downloads
    url = page.driver.current_url
    job = url.split("job=")[1]
    assert f"video={preview(page)['src'].split('/')[-2]}" in url
    assert download.get_attribute("download") == f"answer-{job}.json" and saved["id"] == job
    assert saved["result"]["answer"] == expected.answer and saved["request"]["values"] == ["violin"]
    page.driver.refresh()
    page.wait.until(lambda d: page.el("result").is_displayed())
    assert page.text("answer") == expected.answer and page.driver.current_url == url
    assert page.text("video-status").startswith("v.mp4: 3.0 s") and preview(page)["shown"]
    assert page.select_cls(page.el("template")).first_selected_option.text == TEMPLATE

    # a phone: 390 px wide, nothing wider than the screen
    page.driver.set_window_size(390, 844)
    assert page.js("return window.innerWidth") == 390
    assert page.js("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert page.js("return !!document.querySelector('meta[name=viewport]')")
    phone = page.screenshot(tmp_path / "web-390.png", 390)
    assert page.js("return document.documentElement.scrollWidth") == 390
    print(f"\nscreenshots: {shot} {phone}")

    # MUSIC-AVQA's full-width "？": shown as "?", asked as written (the original tokenizer's tokens)
    page.driver.set_window_size(1280, 1000)
    page.select("template", shown_full_width(FULL_WIDTH))
    assert page.el("question").get_attribute("value") == shown_full_width(FULL_WIDTH)
    assert page.ask() == ""
    assert "reused from the cache" in page.text("features-note")
    assert "VGGish" not in page.text("timings") and "AVST" in page.text("timings")
    saved = get_json(page.el("download").get_attribute("href"))
    assert saved["request"]["question"] == FULL_WIDTH
    assert saved["result"]["question_tokens"] == question_tokens(FULL_WIDTH, ["violin"], "test")


def shown_full_width(text: str) -> str:
    return text.replace("？", "?")


@pytest.mark.slow
def test_masn_question_about_a_gif_in_the_browser(site, page):
    gif = make_video(site["dir"] / "v.gif", SHAPES, seconds=2)  # TGIF-QA's format
    page.use_video(gif)
    page.wait.until(lambda d: page.image_sizes("#preview-gif")[0]["natural"] == [160, 120])  # loaded: it has a size
    assert page.el("preview-gif").is_displayed() and not page.el("preview").is_displayed()
    page.select("model", "MASN FrameQA (TGIF-QA)")
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
    assert page.js("return document.activeElement.id") == "question"


def error_beside(page: Page, field: str, control: str) -> bool:
    """The ``field`` error is shown, in the same panel as ``control`` and below it; no other error is."""
    others = {"video", "model", "question"} - {field}
    return page.js(
        "const e = document.getElementById(arguments[0] + '-error'), c = document.getElementById(arguments[1]);"
        "return !e.hidden && e.closest('section') === c.closest('section') &&"
        " e.getBoundingClientRect().top >= c.getBoundingClientRect().bottom", field, control
    ) and not any(page.error_line(f) for f in others)


@pytest.mark.slow
def test_bad_inputs_show_one_line_beside_their_control(site, page):
    page.use_video(site["video"])
    page.select("model", "AVST (MUSIC-AVQA)")
    page.select("template", OWN_QUESTION)
    page.el("question").send_keys("Is the violn in the video always playing")
    assert "'violn' (closest known: violin" in page.ask()
    assert error_beside(page, "question", "question")

    (site["dir"] / "notes.mp4").write_text("not a video")
    page.upload(site["dir"] / "notes.mp4")
    page.wait.until(lambda d: page.error_line("video"))
    line = page.error_line("video")
    assert line == "notes.mp4: no video stream; upload a video file (mp4, webm, mkv or GIF)"
    assert error_beside(page, "video", "upload")
    folded = page.js("const d = document.querySelector('#video-error details');"
                     "return {hidden: d.hidden, open: d.open, text: d.querySelector('pre').textContent}")
    assert not folded["hidden"] and not folded["open"] and "Invalid data" in folded["text"]
    assert page.text("video-status") == "still using v.mp4"

    page.pick_demo("silent.mp4")
    page.select("template", TEMPLATE)
    assert "silent.mp4: the video has no audio track, and AVST needs one" in page.ask()
    assert error_beside(page, "video", "upload")
    assert "Traceback" not in page.driver.page_source and "0x" not in page.shown_error()


@pytest.mark.slow
def test_a_link_the_server_no_longer_holds_says_so(site, page):
    page.open(site["url"] + "?video=" + "0" * 64 + "&job=gone")
    page.wait.until(lambda d: page.error_line("question") and page.error_line("video"))
    assert page.error_line("question").startswith("The answer in this link is gone: no question 'gone'")
    assert page.error_line("video").startswith(f"no video '{'0' * 64}' on this server")
    assert not page.el("result").is_displayed()


def outcome_without_a_browser() -> BaseException:
    """What ``require_browser`` raises (pytest's fail or skip outcome), caught so the test can look at it."""
    try:
        require_browser()
    except BaseException as err:  # noqa: BLE001 - pytest's outcomes are BaseExceptions
        return err
    raise AssertionError("require_browser returned although no browser was found")


def test_missing_browser_fails_in_ci_and_skips_with_what_to_install_elsewhere(monkeypatch):
    monkeypatch.setattr(web_browser.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    failed = outcome_without_a_browser()
    assert isinstance(failed, pytest.fail.Exception)
    assert str(failed).startswith("CI must run the browser test: chromium, chromedriver")
    monkeypatch.delenv("CI")
    skipped = outcome_without_a_browser()
    assert isinstance(skipped, pytest.skip.Exception)
    install = 'apt-get install chromium chromium-driver && pip install -e ".[web]"'
    assert str(skipped) == f"chromium, chromedriver missing: {install}"  # one line: what to install


def test_templates_follow_the_vocabulary():
    offered = templates_for(AVST_WORDS)
    # by hand: the MUSIC-AVQA templates whose fixed words are all in AVST_WORDS
    assert [t["template"] for t in offered] == [FULL_WIDTH, TEMPLATE, "How many instruments are sounding in the video?"]
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


def test_raw_tool_output_moves_to_the_details():
    message = f"notes.mp4: no video stream ({FFMPEG_TAIL}); upload a video file (mp4, webm, mkv or GIF)"
    assert split_details(message) == ("notes.mp4: no video stream; upload a video file (mp4, webm, mkv or GIF)",
                                      FFMPEG_TAIL)
    one_line = "v.mp4: ffmpeg failed (Invalid data found) near (a (nested) note)"
    assert split_details(one_line) == (one_line, None)  # no address, no joined lines: stays visible
    assert split_details("x (a | b) y") == ("x y", "a | b")
    assert split_details("x (0x1234abcd) y (c)") == ("x y (c)", "0x1234abcd")
    bare = "[mov @ 0x55dc596a5d00] moov atom not found"  # an address outside any group: the whole text folds
    assert split_details(bare) == ("[mov @ ...] moov atom not found", bare)
    assert split_details("open (unclosed | text") == ("open (unclosed | text", None)


def test_each_error_names_its_control():
    videos, checkpoints = ["v.mp4"], ["/c/avst.pt"]
    assert culprit("v.mp4: the video has no audio track", videos, checkpoints) == "video"
    assert culprit("no video yet (or the server restarted)", videos, checkpoints) == "video"
    assert culprit("v.mp4x: a file with a longer name", videos, checkpoints) == "question"
    assert culprit("/c/avst.pt: not a checkpoint", videos, checkpoints) == "model"
    assert culprit("unknown model 'x'; choose one of avst", videos, checkpoints) == "model"
    assert culprit("question word(s) outside the vocabulary of /c/avst.pt: 'violn'", videos, checkpoints) == "question"


def http_error(request: urllib.request.Request | str) -> tuple[int, dict]:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request)
    return err.value.code, json.loads(err.value.read())


def upload(site: dict, path: Path) -> dict:
    request = urllib.request.Request(site["url"] + "api/upload", data=path.read_bytes(),
                                     headers={"X-Filename": path.name})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def test_http_errors_are_json_lines_with_their_control(site):
    ask = site["url"] + "api/ask"
    assert http_error(urllib.request.Request(ask, data=b'{"video": "nope", "model": "avst"}')) == (400, {
        "error": "no video yet (or the server restarted): upload one or pick a demo video", "details": None,
        "field": "video"})
    other_site = http_error(urllib.request.Request(ask, data=b"{}", headers={"Origin": "http://example.com"}))[1]
    assert other_site["error"].startswith("a page from http://example.com may not use this demo")
    code, body = http_error(urllib.request.Request(site["url"] + "api/upload", data=b"not a video",
                                                   headers={"X-Filename": "notes.mp4"}))
    assert code == 400 and body["field"] == "video" and "0x" not in body["error"] and "0x" in body["details"]
    video = upload(site, site["video"])["id"]
    unknown_model = json.dumps({"video": video, "model": "gpt", "question": "why?"}).encode()
    assert http_error(urllib.request.Request(ask, data=unknown_model))[1] == {
        "error": "unknown model 'gpt'; choose one of avst, masn0", "details": None, "field": "model"}
    empty = json.dumps({"video": video, "model": "avst", "question": " "}).encode()
    assert http_error(urllib.request.Request(ask, data=empty))[1]["field"] == "question"
    assert http_error(site["url"] + "api/videos/nope")[1]["field"] == "video"
    assert http_error(site["url"] + "api/jobs/nope")[1]["error"].startswith("no question 'nope'")


def test_video_file_answers_range_requests(site):
    data = site["video"].read_bytes()
    video = upload(site, site["video"])
    assert get_json(site["url"] + f"api/videos/{video['id']}") == video
    url, size = site["url"] + f"api/videos/{video['id']}/file", len(data)

    def fetch(header: str | None) -> tuple[int, bytes, dict]:
        req = urllib.request.Request(url, headers={"Range": header} if header else {})
        with urllib.request.urlopen(req) as response:
            return response.status, response.read(), dict(response.headers)

    status, body, headers = fetch(None)
    assert (status, body, headers["Accept-Ranges"], headers["Content-Type"]) == (200, data, "bytes", "video/mp4")
    status, body, headers = fetch("bytes=0-9")
    assert (status, body, headers["Content-Range"]) == (206, data[:10], f"bytes 0-9/{size}")
    assert fetch(f"bytes={size - 1}-")[1] == data[-1:]
    assert fetch(f"bytes={size - 3}-{size + 100}")[1] == data[-3:]  # an end past the file: up to its end
    status, body, headers = fetch("bytes=-5")  # the last 5 bytes
    assert (status, body, headers["Content-Range"]) == (206, data[-5:], f"bytes {size - 5}-{size - 1}/{size}")
    assert fetch("bytes=")[:2] == (200, data)  # no range given: the whole file
    for unsatisfiable in (f"bytes={size}-", "bytes=5-2"):
        with pytest.raises(urllib.error.HTTPError) as err:
            fetch(unsatisfiable)
        assert err.value.code == 416 and err.value.headers["Content-Range"] == f"bytes */{size}"
