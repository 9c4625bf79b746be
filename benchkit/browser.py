"""The web page in a real browser: Debian's headless chromium through Selenium (the ``[web]`` extra).

Shared by the browser test (tests/test_web.py) and ``scripts/web_screenshot.py``: starting the
browser, the moves they make on the page (by element id) and full-page screenshots at a given width.
Nothing downloads a browser; without one, ``missing()`` says what to install.
"""
from __future__ import annotations

import shutil
from pathlib import Path

INSTALL = 'apt-get install chromium chromium-driver && pip install -e ".[web]"'
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars")
WAIT_S = 90


def missing() -> str | None:
    """One line naming what is missing to drive the browser, with the command that installs it; else None."""
    absent = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        absent.append("selenium")
    return f"{', '.join(absent)} missing: {INSTALL}" if absent else None


def chromium(profile: Path, width: int = 1280, height: int = 1000):
    """A headless chromium window of ``width`` x ``height`` CSS pixels, its profile in ``profile``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=DriverService(shutil.which("chromedriver")), options=options)


class Page:
    """The moves made on the page, by element id."""

    def __init__(self, driver) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select, WebDriverWait

        self.driver, self.by, self.select_cls = driver, By, Select
        self.wait = WebDriverWait(driver, WAIT_S)

    def el(self, element_id: str):
        return self.driver.find_element(self.by.ID, element_id)

    def text(self, element_id: str) -> str:
        return self.el(element_id).text

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def open(self, url: str) -> None:
        """Load ``url`` and wait until the page has read the server's models."""
        self.driver.get(url)
        self.wait.until(lambda d: self.js("return document.getElementById('model').options.length > 0"))

    def select(self, element_id: str, text: str) -> None:
        self.select_cls(self.el(element_id)).select_by_visible_text(text)

    def upload(self, path: Path) -> None:
        self.el("upload").send_keys(str(path))

    def use_video(self, path: Path) -> None:
        """Upload ``path`` and wait until the page names it as the current video."""
        self.upload(path)
        self.wait.until(lambda d: self.text("video-status").startswith(f"{path.name}:"))

    def pick_demo(self, name: str) -> None:
        self.select("demo-video", name)
        self.el("pick").click()
        self.wait.until(lambda d: self.text("video-status").startswith(f"{name}:"))

    def ask(self) -> str:
        """Click Ask, wait for the answer or an error; the error's line ('' when answered)."""
        self.js("document.getElementById('result').hidden = true")
        self.el("ask").click()
        self.wait.until(lambda d: self.el("result").is_displayed() or self.shown_error())
        return self.shown_error()

    def shown_error(self) -> str:
        """The line of the error shown next to a control ('' when none is)."""
        return "".join(self.error_line(field) for field in ("video", "model", "question"))

    def error_line(self, field: str) -> str:
        """The error line next to the ``field`` control ("video", "model" or "question"); '' when none."""
        box = self.el(f"{field}-error")
        return box.find_element(self.by.CLASS_NAME, "line").text if box.is_displayed() else ""

    def bars(self) -> list[tuple[str, str]]:
        """The answer bars' (label, value) texts, top to bottom."""
        rows = self.driver.find_elements(self.by.CSS_SELECTOR, "#bars .bar-row")
        return [(r.find_element(self.by.CLASS_NAME, "bar-label").text,
                 r.find_element(self.by.CLASS_NAME, "bar-value").text) for r in rows]

    def image_sizes(self, css: str) -> list[dict]:
        """Natural and shown sizes of the images matching ``css``."""
        return self.js("return [...document.querySelectorAll(arguments[0])].map(i => ({complete: i.complete, "
                       "natural: [i.naturalWidth, i.naturalHeight], shown: [i.clientWidth, i.clientHeight]}))", css)

    def screenshot(self, path: Path, width: int) -> Path:
        """The whole page at ``width`` CSS pixels (the window grows to the page's height) as a PNG."""
        self.driver.set_window_size(width, 800)
        frame = self.js("return window.outerHeight - window.innerHeight")  # the window's own bars
        self.driver.set_window_size(width, self.js("return document.documentElement.scrollHeight") + frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path
