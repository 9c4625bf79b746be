"""The HTTP side: one static page (``static/``) and a small JSON API over ``Service`` (docs/web-api.md).

    GET  /                        the page             GET  /api/info              models, templates, demo videos
    POST /api/upload              raw video bytes      POST /api/pick              {"name"}: a demo video
    GET  /api/videos/<id>         a video's facts      GET  /api/videos/<id>/file  its bytes (Range requests too)
    POST /api/ask                 {"video", "model", "question", "values", "candidates"} -> {"id"}
    GET  /api/jobs/<id>           progress, timings, result, video, request
    GET  /api/jobs/<id>/<name>.png  heat maps

Errors are JSON ``{"error": "<one line>", "details": "<raw tool output>" | null, "field": "video" |
"model" | "question"}`` with status 400 (the user's: the page shows the line next to the control
named by ``field`` and folds the details) or 500 (a bug: the traceback goes to the terminal, not to
the page). A finished job with an error carries the same three keys.
"""
from __future__ import annotations

import contextlib
import json
import mimetypes
import re
import sys
import threading
import traceback
import urllib.parse
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from engine.errors import UserError, short
from webdemo.service import Job, Service, WebError

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": ("index.html", "text/html"), "/app.js": ("app.js", "text/javascript"),
         "/style.css": ("style.css", "text/css")}
MAX_JSON_BYTES = 1 << 16
CHUNK = 1 << 20
# Raw tool output inside a message: a memory address (ffmpeg's "[mov @ 0x55d...]") or joined lines.
TOOL_OUTPUT = re.compile(r"0x[0-9a-fA-F]{4,}| \| ")
ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{4,}\b")
RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def split_details(message: str) -> tuple[str, str | None]:
    """(the message without raw tool output, that output): every top-level ``( ... )`` group holding
    ffmpeg text moves to the details; a memory address left outside any group moves the whole message."""
    line, details, depth, start = [], [], 0, 0
    for i, char in enumerate(message):
        if char == "(":
            if depth == 0:
                start = i
            depth += 1
        elif char == ")" and depth:
            depth -= 1
            if depth == 0:
                group = message[start:i + 1]
                if TOOL_OUTPUT.search(group):
                    details.append(group[1:-1])
                    line = ["".join(line).rstrip()]
                else:
                    line.append(group)
        elif depth == 0:
            line.append(char)
    if depth:  # an unclosed "(": keep the text as it was
        line.append(message[start:])
    text = " ".join("".join(line).split())
    if ADDRESS.search(text):
        return ADDRESS.sub("...", text), message
    return text, " | ".join(details) or None


def culprit(message: str, videos: Iterable[str], checkpoints: Iterable[str]) -> str:
    """The page control an error is about. Messages name their file first: a video's name (the
    service writes the name the user gave) or a checkpoint's path; the rest are the question's."""
    if message.startswith("no video") or any(message.startswith(f"{name}:") for name in videos):
        return "video"
    if message.startswith("unknown model") or any(message.startswith(f"{path}:") for path in checkpoints):
        return "model"
    return "question"


def error_body(message: str, field: str) -> dict:
    line, details = split_details(message)
    return {"error": short(line), "details": details, "field": field}


def job_json(job: Job) -> dict:
    """A job as the page (and a permalink reloading it) needs it: its video and request too."""
    body = job.public()
    body.update(video=job.video.public(), model=job.model.key,
                request={k: job.request.get(k) for k in ("question", "values", "candidates")})
    if job.error:
        body.update(error_body(job.error, culprit(job.error, [job.video.name], [str(job.model.checkpoint)])))
    return body


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: Service) -> None:
        super().__init__(address, Handler)
        self.service = service

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


@contextlib.contextmanager
def serving(server: DemoServer) -> Iterator[str]:
    """Serve from a background thread while the block runs (tests, scripts/web_screenshot.py); yields
    the page's URL; afterwards the server stops and the service removes its uploads."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        server.service.close()


class Handler(BaseHTTPRequestHandler):
    server: DemoServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:
        """Quiet: the page polls every few hundred milliseconds."""

    def do_GET(self) -> None:
        self._route(self._get)

    def do_POST(self) -> None:
        self._route(self._post)

    def _route(self, handle) -> None:
        path = urllib.parse.urlsplit(self.path).path
        try:
            handle(path)
        except UserError as err:
            self.close_connection = True  # a refused request's body may be unread
            self._json(error_body(str(err), self._field(path, str(err))), HTTPStatus.BAD_REQUEST)
        except Exception as err:  # noqa: BLE001 - a bug: traceback to the terminal, one line to the page
            traceback.print_exc(file=sys.stderr)
            self._json({"error": f"internal error ({type(err).__name__}); the traceback is in the server's "
                                 "terminal", "details": None, "field": self._field(path, "")},
                       HTTPStatus.INTERNAL_SERVER_ERROR)

    def _field(self, path: str, message: str) -> str:
        if path in ("/api/upload", "/api/pick") or path.startswith("/api/videos/"):
            return "video"
        models = self.server.service.models.values()
        return culprit(message, [], [str(m.checkpoint) for m in models])

    def _get(self, path: str) -> None:
        service = self.server.service
        if path in PAGES:
            name, kind = PAGES[path]
            self._send((STATIC / name).read_bytes(), f"{kind}; charset=utf-8")
        elif path == "/api/info":
            self._json(service.info())
        elif path.startswith("/api/videos/"):
            parts = path[len("/api/videos/"):].split("/")
            video = service.videos.get(parts[0])
            if video is None:
                raise WebError(f"no video {parts[0]!r} on this server (it forgets uploads when it stops): "
                               "upload it again")
            if parts[1:] == ["file"]:
                self._send_file(video.path)
            elif len(parts) == 1:
                self._json(video.public())
            else:
                raise WebError(f"{path}: no such page")
        elif path.startswith("/api/jobs/"):
            parts = path[len("/api/jobs/"):].split("/")
            if len(parts) == 1:
                self._json(job_json(service.job(parts[0])))
            elif len(parts) == 2:
                self._send(service.image(parts[0], parts[1]).read_bytes(), "image/png")
            else:
                raise WebError(f"{path}: no such page")
        else:
            self._json({"error": f"{path}: no such page", "details": None, "field": None}, HTTPStatus.NOT_FOUND)

    def _post(self, path: str) -> None:
        service = self.server.service
        origin = self.headers.get("Origin")
        if origin and urllib.parse.urlsplit(origin).netloc != self.headers.get("Host"):
            raise WebError(f"a page from {origin} may not use this demo; open {self.server.url} itself")
        length = int(self.headers.get("Content-Length") or 0)
        if path == "/api/upload":
            name = urllib.parse.unquote(self.headers.get("X-Filename") or "upload")
            self._json(service.add_upload(name, self.rfile, length).public())
            return
        if length > MAX_JSON_BYTES:
            self.rfile.read(length)
            raise WebError(f"request of {length} bytes: too long for a question")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise WebError(f"the request is not JSON ({err})") from None
        if not isinstance(body, dict):
            raise WebError("the request must be a JSON object")
        if path == "/api/pick":
            self._json(service.pick_demo(str(body.get("name", ""))).public())
        elif path == "/api/ask":
            self._json({"id": service.submit(body).id})
        else:
            self._json({"error": f"{path}: no such endpoint", "details": None, "field": None}, HTTPStatus.NOT_FOUND)

    def _json(self, value: dict, status: int = HTTPStatus.OK) -> None:
        self._send(json.dumps(value).encode(), "application/json", status)

    def _send(self, body: bytes, kind: str, status: int = HTTPStatus.OK) -> None:
        self._head(status, kind, len(body))
        self.wfile.write(body)

    def _head(self, status: int, kind: str, length: int, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()

    def _send_file(self, path: Path) -> None:
        """The file, or the byte range asked for: the browser's <video> seeks with Range requests."""
        size = path.stat().st_size
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        start, end, status = 0, size - 1, HTTPStatus.OK
        asked = RANGE.fullmatch((self.headers.get("Range") or "").strip())
        if asked and (asked[1] or asked[2]):
            if asked[1]:
                start, end = int(asked[1]), min(int(asked[2] or size - 1), size - 1)
            else:  # "bytes=-N": the last N bytes
                start = max(size - int(asked[2]), 0)
            if start > end:
                self._head(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, kind, 0, {"Content-Range": f"bytes */{size}"})
                return
            status = HTTPStatus.PARTIAL_CONTENT
        extra = {"Accept-Ranges": "bytes"}
        if status == HTTPStatus.PARTIAL_CONTENT:
            extra["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._head(status, kind, end - start + 1, extra)
        with open(path, "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0 and (chunk := f.read(min(CHUNK, left))):
                self.wfile.write(chunk)
                left -= len(chunk)
