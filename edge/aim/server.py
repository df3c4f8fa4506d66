"""The aim preview's web server: the newest preview JPEG and summary, served to localhost (an SSH
tunnel) by a stdlib HTTP server that logs nothing and refuses other Host names."""

from __future__ import annotations

import html
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Preview:
    """The newest preview JPEG and summary, shared with the HTTP handlers."""

    def __init__(self, summary: dict) -> None:
        self.jpeg: bytes | None = None
        self.summary = summary
        self.seq = 0
        self.closed = False
        self.changed = threading.Condition()

    def publish(self, jpeg: bytes, summary: dict) -> None:
        with self.changed:
            self.jpeg, self.summary, self.seq = jpeg, summary, self.seq + 1
            self.changed.notify_all()

    def next(self, after: int, timeout: float) -> tuple[int, bytes] | None:
        with self.changed:
            self.changed.wait_for(lambda: self.seq > after or self.closed, timeout)
            if self.seq > after and self.jpeg is not None and not self.closed:
                return self.seq, self.jpeg
            return None

    def close(self) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify_all()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>aicctv aim</title>
<style>body{background:#111;color:#eee;font:16px sans-serif;margin:1em}img{max-width:100%}</style>
</head><body>
<p id="summary">{summary}</p>
<img src="/stream.mjpg" alt="live preview">
<ul id="followed"></ul>
<p>Green: a face wide enough to classify (at least {min_classify} px); red: too small, counted but never
classified. Anything that might be a face is hidden and the rest softened{unpixelated}.
{labels}Nothing is recorded. The preview stops after {minutes} min.</p>
<script>
setInterval(() => fetch("/summary").then(r => r.json())
  .then(j => {
    document.getElementById("summary").textContent = j.text;
    document.getElementById("followed").replaceChildren(...(j.followed || []).map(text => {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }));
  }).catch(() => {}), 1000);
</script>
</body></html>
"""


LABELS = """Each followed person is labelled with their track number, gender and age band as the
pipeline judges them so far ("unknown" where it does not judge: a face too small, not yet classified,
or within the gender margin); the visitor is counted with the verdict their visit ends with.
"""


def page(min_classify: int, pixelate: bool, minutes: float, labels: bool = False) -> str:
    """The preview page for these settings (the summary is filled in per request)."""
    return (
        PAGE.replace("{min_classify}", str(min_classify))
        .replace("{labels}", LABELS if labels else "")
        .replace("{unpixelated}", "" if pixelate else " (not now: --no-pixelate is on)")
        .replace("{minutes}", f"{minutes:g}")
    )


LOCAL_NAMES = {"127.0.0.1", "localhost", "[::1]"}


def local_host_header(value: str, arrived_on: str = "") -> bool:
    """Whether a Host header names this machine, as a browser here or through an SSH tunnel (any
    local port) sends it, or by the address the connection `arrived_on` (--public, opened by IP):
    any other name is a web page trying to read the preview by DNS rebinding."""
    name = value.lower()
    if not name.startswith("["):
        name = name.partition(":")[0]
    elif "]" in name:
        name = name[: name.index("]") + 1]
    address = arrived_on.lower().partition("%")[0]  # an IPv6 address without its zone
    return name in LOCAL_NAMES or (bool(address) and name in (address, f"[{address}]"))


def handler_for(preview: Preview, page: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "aicctv-aim"
        protocol_version = "HTTP/1.1"
        # A connection that sends nothing (or stops reading) is dropped, not held for ever.
        timeout = 30

        def log_message(self, format: str, *args: object) -> None:
            pass  # nothing is logged: a request log is no use here

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if not local_host_header(self.headers.get("Host") or "", self.connection.getsockname()[0]):
                self._send(
                    403,
                    "text/plain",
                    b"open the preview as http://127.0.0.1:PORT/ (an SSH tunnel), or with --public by the "
                    b"device's IP address, not a name\n",
                )
            elif path == "/":
                text = html.escape(preview.summary.get("text", ""))
                self._send(200, "text/html; charset=utf-8", page.replace("{summary}", text).encode())
            elif path == "/summary":
                self._send(200, "application/json", json.dumps(preview.summary).encode())
            elif path == "/frame.jpg":
                got = preview.next(-1, 0)
                if got is None:
                    self.send_response(503)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._send(200, "image/jpeg", got[1])
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self._send(404, "text/plain", b"not found: try / /stream.mjpg /frame.jpg /summary\n")

        def _stream(self) -> None:
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            seq = 0
            while not preview.closed:
                got = preview.next(seq, 1.0)
                if got is None:
                    continue
                seq, jpeg = got
                head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                try:
                    self.wfile.write(head + jpeg + b"\r\n")
                    self.wfile.flush()
                except OSError:  # the viewer left
                    return

    return Handler


def serve(host: str, port: int, preview: Preview, page: str) -> ThreadingHTTPServer:
    """Bound (not yet serving) server; raises OSError when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # A viewer that resets its connection is no error to print (socketserver's default: a traceback).
    quiet = {"address_family": family, "daemon_threads": True, "handle_error": lambda *_: None}
    server_class = type("AimServer", (ThreadingHTTPServer,), quiet)
    return server_class((host, port), handler_for(preview, page))
