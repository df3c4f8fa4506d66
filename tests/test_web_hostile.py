"""The dashboard under hostile use (issue 22): a real uvicorn server over a real central log,
driven with raw sockets where a well-behaved HTTP client would not send what an attacker does."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shutil
import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pytest

from central.config import CentralConfig, hash_secret
from central.localtime import day_hours, zone
from central.store import SCHEMA, Batch, open_store
from central.web.app import Auth
from edge.wire.config import ConfigError, load
from edge.wire.contract import parse_hour
from tests import test_web
from tests.test_web import BERLIN, DST_DAY, WEEK_BEFORE, Server, day_records, seed, wait

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


# ---- the log as the dashboard finds it: locked, older, newer, damaged, gone -------------------------


def user_version(path: str, set_to: int | None = None) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        if set_to is not None:
            conn.execute(f"PRAGMA user_version = {set_to}")
        return conn.execute("PRAGMA user_version").fetchone()[0]


def test_the_log_is_opened_read_only_and_a_writers_lock_is_not_waited_for(log, tmp_path):
    writer = sqlite3.connect(log, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another writer (the subscriber) mid-transaction
    try:
        with Server(log) as server:
            started = time.monotonic()
            status, _, body = server.get("/healthz")
            assert (status, body) == (200, b"ok\n")
            assert server.get(f"/day?device=shop-1&date={DST_DAY}")[0] == 200
            assert time.monotonic() - started < 10, "the dashboard waited for the writer's lock"
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    # A log of the first release (schema 0) is read as it is, never migrated by the dashboard.
    old = str(shutil.copy(Path(__file__).parent / "fixtures" / "logs" / "central-v0.1.0.db", tmp_path / "old.db"))
    with Server(old) as server:
        status, _, body = server.get("/healthz")
        assert status == 503 and b"older than this aicctv's" in body and b"aicctv central run" in body
    assert user_version(old) == 0


def test_a_newer_log_is_a_clear_503_everywhere(log):
    with Server(log) as server:
        assert server.get("/healthz")[0] == 200
        user_version(log, set_to=SCHEMA.version + 1)  # migrated by a newer aicctv meanwhile
        status, _, body = server.get("/healthz")
        assert status == 503 and b"newer than this aicctv's" in body and b"upgrade aicctv" in body
        status, headers, page = server.get("/day")
        assert status == 503 and headers["Content-Type"].startswith("text/html") and b"upgrade aicctv" in page
        status, _, body = server.get("/api/v1/live")
        assert status == 503 and "upgrade aicctv" in json.loads(body)["error"]
        assert server.get("/metrics")[0] == 503
    assert user_version(log) == SCHEMA.version + 1


def test_an_undecodable_row_is_left_out_and_said(log, browser):
    hour = day_hours(DST_DAY, BERLIN)[5]  # the hour seed() leaves out
    with contextlib.closing(sqlite3.connect(log)) as conn, conn:
        conn.execute(
            "INSERT INTO hourly (device, hour, revision, record, visitors, received) VALUES (?, ?, 1, ?, 3, 0)",
            ("shop-1", hour, '{"device": "shop-1", "from": "a newer aicctv"'),
        )
    with Server(log) as server:
        assert server.get("/healthz")[0] == 200  # nothing has read that row yet
        browser.get(f"{server.url}/day?device=shop-1&date={DST_DAY}")
        wait(browser, lambda d: d.execute_script("return document.body.dataset.chartReady") == "1")
        warning = browser.find_element("id", "unreadable").text
        assert warning.startswith("1 row(s) of the central log") and f"shop-1 {hour}" in warning
        assert browser.find_element("id", "total-visitors").text == str(
            sum(r.visitors for r in day_records("shop-1", DST_DAY, BERLIN, skip=5))
        )
        hourly = server.json(f"/api/v1/hourly?device=shop-1&since={DST_DAY}&until={DST_DAY}")
        assert len(hourly["records"]) == 22
        status, _, body = server.get("/healthz")
        assert status == 503 and body.startswith(b"not ok: 1 row(s)") and b"shop-1" not in body
    # Live counts that are not numbers: that device's are left out, the pages go on.
    with contextlib.closing(sqlite3.connect(log)) as conn, conn:
        conn.execute("INSERT INTO live VALUES ('door-3', 'soon', 1, 2, ?)", (time.time(),))
    with Server(log) as server:
        live = {d["device"]: d["in_view"] for d in server.json("/api/v1/live")["devices"]}
        assert live["shop-1"] == 2 and "door-3" not in live
        status, _, page = server.get("/")
        assert status == 200 and b"door-3 live counts: time" in page
        assert server.get("/metrics")[0] == 200 and server.get("/devices")[0] == 200


def test_healthz_names_no_database_host_port_or_role():
    with Server("postgresql://central_role:pw@127.0.0.1:1/aicctv_log") as server:
        status, _, body = server.get("/healthz")
        assert status == 503 and body.startswith(b"not ok: the database cannot be reached")
        for secret in (b"127.0.0.1", b"port", b"central_role", b"aicctv_log", b"pw"):
            assert secret not in body, body


def reporting(server: Server) -> set[str]:
    """The devices with a status in the log the server reads."""
    return {d["device"] for d in server.json("/api/v1/devices")["devices"] if d["status"]}


def test_a_deleted_or_replaced_log_is_noticed(log, tmp_path):
    with Server(log) as server:
        assert server.get("/healthz")[0] == 200
        assert reporting(server) == {"shop-1", "lobby-2"}
        for path in Path(log).parent.glob("central.db*"):
            path.unlink()
        status, _, body = server.get("/healthz")
        assert status == 503 and b"gone" in body
        assert server.get("/api/v1/devices")[0] == 503
        # Another log put in its place (a restored backup): read from then on.
        other = tmp_path / "other.db"
        store = open_store(other)
        store.write(Batch(statuses={"door-3": "online"}))
        store.close()
        os.replace(other, log)
        assert server.get("/healthz")[0] == 200
        assert reporting(server) == {"door-3"}
        replacement = tmp_path / "again.db"
        shutil.copy(log, replacement)
        store = open_store(replacement)
        store.write(Batch(statuses={"gate-4": "online"}))
        store.close()
        os.replace(replacement, log)  # replaced while the dashboard has it open
        assert reporting(server) == {"door-3", "gate-4"}


# ---- Host: DNS rebinding -----------------------------------------------------------------------


def test_a_host_it_does_not_serve_is_refused(log):
    with Server(log, hosts="dashboard.example.com, AICCTV.lan") as server:
        port = server.url.rsplit(":", 1)[1]
        for path in ("/api/v1/devices", "/log.csv", "/metrics", "/", "/healthz"):
            status, _, body = server.get(path, {"Host": f"rebind.attacker.example:{port}"})
            assert status == 421 and b"web.hosts" in body, (path, status, body)
        # Served: its own address, the loopback names (any port: an SSH tunnel's), configured names.
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost:9000", f"[::1]:{port}", "127.0.0.1"):
            assert server.get("/api/v1/devices", {"Host": host})[0] == 200, host
        for host in ("dashboard.example.com", f"aicctv.lan:{port}", "DASHBOARD.example.com."):
            assert server.get("/api/v1/devices", {"Host": host})[0] == 200, host
        for host in ("dashboard.example.com.evil", "localhost.evil", "127.0.0.1.nip.io", "[::1", ""):
            assert server.get("/api/v1/devices", {"Host": host})[0] in (400, 421), host


def test_web_hosts_takes_names_only():
    for bad in ("dashboard.example.com:8080", "http://x.example", "a b", "*.example.com"):
        with pytest.raises(ConfigError, match=r"web\.hosts: .* is not a host name"):
            load(CentralConfig, overrides={"web.hosts": f"ok.example, {bad}"}, environ={})
    web = load(CentralConfig, overrides={"web.hosts": " A.example. ,[::1],"}, environ={}).web
    assert web.host_names == {"a.example", "[::1]"}


def test_a_rebound_name_reads_nothing_in_a_browser(log):
    """The attack itself: the browser resolves the attacker's name to this machine."""
    with Server(log) as server:
        port = server.url.rsplit(":", 1)[1]
        driver = test_web.chromium("--host-resolver-rules=MAP rebind.attacker.example 127.0.0.1")
        try:
            driver.get(f"http://rebind.attacker.example:{port}/api/v1/devices")
            text = driver.find_element("tag name", "body").text
        finally:
            driver.quit()
        assert "shop-1" not in text and "does not serve" in text


# ---- wrong credentials cannot exhaust the server -------------------------------------------------


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def flood(url: str, count: int, sources: list[str], under_way: threading.Event | None = None) -> list[int]:
    """`count` simultaneous requests with distinct wrong passwords, from the given loopback
    source addresses in turn; their statuses. `under_way` is set as they all set off."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    start = threading.Barrier(count, action=under_way.set if under_way else None)

    def one(n: int) -> int:
        conn = http.client.HTTPConnection(host, int(port), timeout=60, source_address=(sources[n % len(sources)], 0))
        try:
            start.wait()
            conn.request("GET", "/api/v1/live", headers=basic("owner", f"guess-{n}"))
            return conn.getresponse().status
        finally:
            conn.close()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def scrypt_threads() -> int:
    """Worker threads the server's checks have started (they stay a while when idle)."""
    return sum(1 for t in threading.enumerate() if t.name == "AnyIO worker thread")


def test_a_flood_of_wrong_passwords_is_throttled_and_logged_in_requests_go_on(log):
    with Server(log, host="0.0.0.0", password_hash=hash_secret("owner-password")) as server:
        owner = basic("owner", "owner-password")
        assert server.get("/api/v1/live", owner)[0] == 200  # logged in: remembered from now on
        # One address guessing: a few guesses are checked, then it is told to wait, unchecked.
        statuses = flood(server.url, 40, ["127.0.0.1"])
        assert statuses.count(401) == Auth.FAILURES_ALLOWED and statuses.count(429) == 30, statuses
        assert server.get("/api/v1/live", basic("owner", "one-more-guess"))[0] == 429
        # Many addresses at once (127.0.0.2-61): at most two checks run together and 32 wait;
        # the rest are turned away at once rather than queued; the owner is served throughout.
        under_way = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            flooding = pool.submit(flood, server.url, 60, [f"127.0.0.{i}" for i in range(2, 62)], under_way)
            assert under_way.wait(60)
            started = time.monotonic()
            assert server.get("/api/v1/live", owner)[0] == 200
            assert time.monotonic() - started < 10, "the logged-in request waited for the flood"
            statuses = flooding.result(120)
        assert set(statuses) <= {401, 503} and statuses.count(401) >= Auth.CHECKS_AT_ONCE, statuses
        assert scrypt_threads() <= Auth.CHECKS_AT_ONCE + 1  # + the first request's
        assert server.get("/api/v1/live", owner)[0] == 200


def test_two_authorization_headers_are_refused(log):
    """One was checked while the routes logged and matched Origin against the other: a holder of
    the password could sign the settings log as someone else."""
    with Server(log, token_hash=hash_secret(TOKEN), password_hash=hash_secret("owner-password")) as server:
        right = basic("owner", "owner-password")["Authorization"]
        for first, second in ((right, f"Bearer {TOKEN}"), ("Bearer forged-0000", right)):
            head = (
                f"GET /api/v1/live HTTP/1.1\r\nHost: {server.url.removeprefix('http://')}\r\n"
                f"Authorization: {first}\r\nAuthorization: {second}\r\nConnection: close\r\n\r\n"
            )
            status, body = raw_exchange(server.url, head, [])
            assert status == 400 and b"one Authorization header" in body
        assert server.get("/api/v1/live", {"Authorization": right})[0] == 200


# ---- how much one request reads -------------------------------------------------------------------


def test_a_range_over_the_read_limit_is_a_400_and_the_log_page_reads_only_what_it_shows(log, monkeypatch):
    """A whole fleet's history in one request took gigabytes and froze every other request (all
    reads share one database thread); the seeded log's 70 records stand in for 50,000."""
    monkeypatch.setattr("central.web.app.MAX_RECORDS", 30)
    monkeypatch.setattr("central.web.app.LOG_PAGE_ROWS", 10)
    week = f"since={WEEK_BEFORE}&until={DST_DAY}"
    with Server(log) as server:
        for path in ("/api/v1/hourly", "/api/v1/hourly?by=day", f"/log.csv?{week}", f"/log.xlsx?{week}"):
            status, _, body = server.get(path)
            assert status == 400, (path, status)
            text = json.loads(body)["error"] if path.startswith("/api/") else body.decode()
            assert "more than 30 hourly records" in text and "fewer days or one device" in text, path
        assert len(server.json(f"/api/v1/hourly?device=shop-1&since={DST_DAY}&until={DST_DAY}")["records"]) == 22
        # A site's own devices count, not the others' (lobby-2's 24 that day would pass the 30).
        site_day = server.json(f"/api/v1/hourly?site=berlin&since={DST_DAY}&until={DST_DAY}")["records"]
        assert len(site_day) == 22 and {r["device"] for r in site_day} == {"shop-1"}
        assert server.get(f"/log.csv?device=shop-1&since={DST_DAY}&until={DST_DAY}")[0] == 200
        status, _, body = server.get(f"/log?{week}")
        assert status == 200 and body.count(b"<tr class=") == 10
        assert b"More than 10 hourly records, the first 10 shown" in body
        status, _, body = server.get(f"/api/v1/hourly?since={DST_DAY}T12:00:00Z&until={WEEK_BEFORE}T12:00:00Z")
        assert status == 400 and json.loads(body)["error"] == "until is before since"


# ---- dates out of range --------------------------------------------------------------------------

OUT_OF_RANGE = [
    "/day?date=9999-12-31",
    "/day?date=0001-01-01",
    "/week?date=0001-01-01",
    "/week?date=9999-12-31",
    "/month?date=9999-12-01",
    "/month?date=0001-01-31",
    "/log?since=0001-01-01",
    "/log?until=9999-12-31",
    "/log.csv?since=0001-01-01&until=0001-01-02",
    "/log.xlsx?until=9999-12-31",
    "/api/v1/hourly?until=0001-01-01",
    "/api/v1/hourly?since=9999-12-31",
    "/api/v1/hourly?since=0001-01-01T00:00:00Z",
    "/api/v1/hourly?until=9999-12-31T23:59:59%2B00:00",
    "/api/v1/hourly?since=0999-06-01T00:00:00-12:00&by=day",
    "/day?device=shop-1&date=1969-12-31",
]


def test_dates_out_of_range_are_a_clear_400_everywhere(log):
    with Server(log) as server:
        for path in OUT_OF_RANGE:
            status, _, body = server.get(path)
            assert status == 400, (path, status, body[-300:])
            text = json.loads(body)["error"] if path.startswith("/api/") else body.decode()
            assert "out of range: from 1970-01-01 to 9998-12-31" in text, (path, text[-300:])
        # The ends of the range are served, their hours well formed.
        for path in (
            "/day?date=1970-01-01",
            "/week?date=1970-01-01",
            "/month?date=9998-12-31",
            "/log?until=9998-12-31",
        ):
            assert server.get(path)[0] == 200, path
        for tz in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):
            hourly = server.json(f"/api/v1/hourly?since=1970-01-01&until=9998-12-31&tz={tz}")
            assert hourly["since"] == day_hours(date(1970, 1, 1), zone(tz))[0]
            assert hourly["until"] == day_hours(date(9998, 12, 31), zone(tz))[-1]
            assert parse_hour(hourly["since"]) < parse_hour(hourly["until"])
