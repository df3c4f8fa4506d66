"""The dashboard under hostile use (issue 22): a real uvicorn server over a real central log,
driven with raw sockets where a well-behaved HTTP client would not send what an attacker does."""

from __future__ import annotations

import http.client
import socket

import pytest

from central.config import hash_secret
from tests import test_web
from tests.test_web import Server, seed

browser = test_web.browser  # the module's headless Chromium fixture

TOKEN = "s3cret-token-123"


@pytest.fixture
def log(tmp_path) -> str:
    """A seeded central log (SQLite): the records of tests/test_web.py."""
    path = str(tmp_path / "central.db")
    seed(path)
    return path


def raw_exchange(url: str, head: str, body_chunks: list[bytes], timeout_s: float = 20) -> tuple[int, bytes]:
    """Send a request head and body chunks over a plain socket (stopping at the first chunk the
    server no longer takes), then read the answer: (status, body)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(head.encode("latin-1"))
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except OSError:
                break  # the server answered and closed: what a size limit does
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


# ---- POST /settings: the 4 KiB limit holds while reading -----------------------------------------


def test_settings_stops_reading_a_body_at_its_limit(log):
    with Server(log, token_hash=hash_secret(TOKEN)) as server:
        host = server.url.removeprefix("http://")
        common = (
            f"POST /settings HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
        )
        # Announces 300 MB and sends none of it: refused at once, not after waiting for it all.
        status, body = raw_exchange(server.url, common + "Content-Length: 300000000\r\n\r\n", [])
        assert status == 413 and b"form" in body
        # Chunked, no length given: refused once past 4 KiB, while the client would go on sending.
        chunk = b"2000\r\n" + b"device=" + b"x" * (0x2000 - 7) + b"\r\n"
        status, body = raw_exchange(server.url, common + "Transfer-Encoding: chunked\r\n\r\n", [chunk])
        assert status == 413 and b"form" in body
