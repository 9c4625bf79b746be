"""The HTTP side: one static page (``static/``) and a small JSON API over ``Service``.

    GET  /                      the page            GET  /api/info            models, templates, demo videos
    POST /api/upload            raw video bytes     POST /api/pick            {"name"}: a demo video
    POST /api/ask               {"video", "model", "question", "values", "candidates"} -> {"id"}
    GET  /api/jobs/<id>         progress, timings, result      GET /api/jobs/<id>/<name>.png  heat maps

Errors are JSON ``{"error": "<one line>"}`` with status 400 (the user's: the page shows the line) or
500 (a bug: the traceback goes to the terminal, not to the page).
"""
from __future__ import annotations

import json
import sys
import traceback
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from engine.errors import UserError, short
from webdemo.service import Service, WebError

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": ("index.html", "text/html"), "/app.js": ("app.js", "text/javascript"),
         "/style.css": ("style.css", "text/css")}
MAX_JSON_BYTES = 1 << 16


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: Service) -> None:
        super().__init__(address, Handler)
        self.service = service

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


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
        try:
            handle(urllib.parse.urlsplit(self.path).path)
        except UserError as err:
            self.close_connection = True  # a refused request's body may be unread
            self._json({"error": short(str(err))}, HTTPStatus.BAD_REQUEST)
        except Exception as err:  # noqa: BLE001 - a bug: traceback to the terminal, one line to the page
            traceback.print_exc(file=sys.stderr)
            self._json({"error": f"internal error ({type(err).__name__}); the traceback is in the server's "
                                 "terminal"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def _get(self, path: str) -> None:
        service = self.server.service
        if path in PAGES:
            name, kind = PAGES[path]
            self._send((STATIC / name).read_bytes(), f"{kind}; charset=utf-8")
        elif path == "/api/info":
            self._json(service.info())
        elif path.startswith("/api/jobs/"):
            parts = path[len("/api/jobs/"):].split("/")
            if len(parts) == 1:
                self._json(service.job(parts[0]).public())
            elif len(parts) == 2:
                self._send(service.image(parts[0], parts[1]).read_bytes(), "image/png")
            else:
                raise WebError(f"{path}: no such page")
        else:
            self._json({"error": f"{path}: no such page"}, HTTPStatus.NOT_FOUND)

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
            self._json({"error": f"{path}: no such endpoint"}, HTTPStatus.NOT_FOUND)

    def _json(self, value: dict, status: int = HTTPStatus.OK) -> None:
        self._send(json.dumps(value).encode(), "application/json", status)

    def _send(self, body: bytes, kind: str, status: int = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)
