"""`aicctv central serve`: a real server on a free port over a real database (SQLite and
PostgreSQL), its pages driven in a real headless Chromium (Debian's chromium + chromium-driver
through Selenium), its API, access control, local days across clock changes and exports."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from central.config import (
    DisplaySection,
    Place,
    Places,
    WebSection,
    hash_secret,
    load_central,
    read_places,
    verify_secret,
)
from central.localtime import OpeningHours, day_hours, zone
from central.store import Batch, open_store
from edge.cli.main import main
from edge.wire.config import ConfigError, load
from edge.wire.contract import (
    AGE_BANDS,
    GENDERS,
    HourlyRecord,
    LiveCounts,
    empty_counts,
    encode,
    hour_start,
    parse_hour,
)

BERLIN = zone("Europe/Berlin")
DST_DAY = date(2026, 3, 29)  # Europe: clocks go forward at 02:00, a 23-hour day
WEEK_BEFORE = date(2026, 3, 22)
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENS = os.environ.get("AICCTV_SCREENS")  # a folder: also save a screenshot of every page there


def record(device: str, hour: str, n: int, coverage: float = 1.0) -> HourlyRecord:
    counts = empty_counts()
    counts["female"]["20-29"] = n // 2
    counts["male"]["30-39"] = n - n // 2 - (1 if n >= 3 else 0)
    return HourlyRecord(device, hour, n, counts, 12.5, 9000, coverage, 1)


def day_records(device: str, day: date, tz, skip: int | None = None, partial: int | None = None) -> list[HourlyRecord]:
    """A record for every hour of a local day but `skip`, more visitors in the afternoon."""
    out = []
    for i, hour in enumerate(day_hours(day, tz)):
        if i == skip:
            continue
        n = (i % 7) + (5 if 9 <= i <= 17 else 0)
        out.append(record(device, hour, n, 0.4 if i == partial else 1.0))
    return out


def seed(db: str) -> list[HourlyRecord]:
    records = [
        *day_records("shop-1", DST_DAY, BERLIN, skip=5, partial=12),
        *day_records("shop-1", WEEK_BEFORE, BERLIN),
        *day_records("lobby-2", DST_DAY, zone("Asia/Kolkata")),
    ]
    store = open_store(db)
    try:
        store.write(
            Batch(
                hourly=records,
                statuses={"shop-1": "online", "lobby-2": "offline"},
                live=[LiveCounts("shop-1", time.time(), 2, 5)],
            )
        )
        store.write(Batch(counters={"received.hourly": len(records), "rejected.schema": 2}))
    finally:
        store.close()
    return records


PLACES = Places(
    devices={
        "shop-1": Place(timezone="Europe/Berlin", site="berlin", opening_hours="mon-sat 09:00-18:00", name="Shop"),
        "lobby-2": Place(timezone="Asia/Kolkata"),
    },
    sites={"berlin": Place(timezone="Europe/Berlin")},
)


class Server:
    """uvicorn serving the dashboard in a thread, on a free port of `host`."""

    def __init__(self, db: str, host: str = "127.0.0.1", **web: object) -> None:
        import uvicorn

        from central.config import CentralConfig
        from central.web.app import create_app

        overrides = {"storage.db": db, "web.refresh_s": 1.0} | {f"web.{k}": v for k, v in web.items()}
        config = load(CentralConfig, overrides=overrides, environ={})
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(config, PLACES), log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def json(self, path: str) -> dict:
        status, _, body = self.get(path)
        assert status == 200, body
        return json.loads(body)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "central.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def sqlite_db(tmp_path) -> str:
    return str(tmp_path / "central.db")


def chromium(*flags: str):
    """A headless Chromium under Selenium (Debian's chromium and chromium-driver), with `flags`."""
    if not CHROMEDRIVER.exists():
        from bench.services import missing

        missing("chromium-driver", "apt-get install chromium chromium-driver (.ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,1000",
        *flags,
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def wait(driver, condition, timeout_s: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.05).until(lambda d: condition(d))


def screenshot(driver, name: str) -> None:
    if SCREENS:
        Path(SCREENS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SCREENS) / f"{name}.png"))


def export_lines(capsys, *args: str) -> list[str]:
    assert main(["central", "export", *args]) == 0
    return capsys.readouterr().out.splitlines()


# ---- in the browser -----------------------------------------------------------------------------


def test_day_chart_totals_equal_the_export_on_a_23_hour_local_day(db, browser, capsys):
    seed(db)
    with Server(db) as server:
        browser.get(f"{server.url}/day?device=shop-1&date={DST_DAY}")
        wait(browser, lambda d: d.execute_script("return document.body.dataset.chartReady") == "1")
        chart = browser.execute_script(
            "const c = window.aicctvChart; return {labels: c.data.labels, sets: c.data.datasets.map(s => s.data)}"
        )
        screenshot(browser, "day")
        total_text = browser.find_element("id", "total-visitors").text
    # 23 hours: 02:00 does not exist that day.
    assert len(chart["labels"]) == 23 and "02:00" not in chart["labels"]
    assert chart["labels"][:3] == ["00:00", "01:00", "03:00"]
    drawn = sum(v or 0 for series in chart["sets"][:3] for v in series)
    # The export's records of that local day (local_start in Europe/Berlin), the same total.
    lines = export_lines(capsys, "--db", db, "--device", "shop-1", "--tz", "Europe/Berlin", "--format", "json")
    exported = [json.loads(line) for line in lines]
    of_day = [r for r in exported if r["local_start"].startswith(str(DST_DAY))]
    assert len(of_day) == 22  # one hour missing: shown as no data, not as zero
    assert drawn == sum(r["visitors"] for r in of_day) == int(total_text)
    # The missing hour is drawn as no data (null), the partial one marked.
    assert chart["sets"][0][5] is None
    states = json.loads(browser.find_element("id", "chart-data").get_attribute("textContent"))["state"]
    assert states[5] == "nodata" and states[12] == "partial" and states.count("full") == 21
    # Last week's same weekday is the comparison line.
    assert chart["sets"][3][0] == 0 and chart["sets"][3][10] is not None


def test_a_25_hour_day_and_closed_hours(sqlite_db, browser):
    seed(sqlite_db)
    with Server(sqlite_db) as server:
        browser.get(f"{server.url}/day?device=shop-1&date=2026-10-25")
        wait(browser, lambda d: d.execute_script("return document.body.dataset.chartReady") == "1")
        data = json.loads(browser.find_element("id", "chart-data").get_attribute("textContent"))
        # A Sunday: the shop is closed all day (mon-sat), and 02:00 happens twice.
        assert len(data["labels"]) == 25 and "02:00 CEST" in data["labels"] and "02:00 CET" in data["labels"]
        assert all(data["closed"])
        browser.get(f"{server.url}/day?device=shop-1&date=2026-03-30")
        wait(browser, lambda d: d.execute_script("return document.body.dataset.chartReady") == "1")
        data = json.loads(browser.find_element("id", "chart-data").get_attribute("textContent"))
        assert data["closed"][8] and not data["closed"][9] and not data["closed"][17] and data["closed"][18]


def test_now_page_updates_when_live_counts_arrive(db, browser):
    seed(db)
    with Server(db) as server:
        browser.get(server.url + "/")
        card = '[data-device="shop-1"] [data-field="in_view"]'
        assert browser.find_element("css selector", card).text == "2"
        screenshot(browser, "now")
        store = open_store(db)
        try:
            store.write(Batch(live=[LiveCounts("shop-1", time.time() + 1, 7, 9)]))
        finally:
            store.close()
        wait(browser, lambda d: d.find_element("css selector", card).text == "7")
        this_hour = browser.find_element("css selector", '[data-device="shop-1"] [data-field="visitors_this_hour"]')
        assert this_hour.text == "9"


def test_week_devices_and_log_pages(sqlite_db, browser):
    seed(sqlite_db)
    with Server(sqlite_db) as server:
        browser.get(f"{server.url}/week?site=berlin&date={DST_DAY}")
        wait(browser, lambda d: d.execute_script("return document.body.dataset.chartReady") == "1")
        data = json.loads(browser.find_element("id", "chart-data").get_attribute("textContent"))
        assert data["labels"][0] == "Mon 23" and len(data["labels"]) == 7
        assert data["compare"][6] is not None  # the Sunday a week earlier
        screenshot(browser, "week")
        browser.get(f"{server.url}/month?device=lobby-2&date={DST_DAY}")
        wait(browser, lambda d: d.execute_script("return document.body.dataset.chartReady") == "1")
        screenshot(browser, "month")
        browser.get(f"{server.url}/devices")
        row = browser.find_element("css selector", 'tr[data-device="lobby-2"]')
        assert "offline" in row.text
        screenshot(browser, "devices")
        browser.get(f"{server.url}/log?device=shop-1&since={DST_DAY}&until={DST_DAY}")
        rows = browser.find_elements("css selector", "table.log tbody tr")
        assert len(rows) == 22
        assert rows[0].text.split()[:3] == ["shop-1", "2026-03-29", "00:00"]
        screenshot(browser, "log")
        href = browser.find_element("id", "download-xlsx").get_attribute("href")
        status, headers, body = server.get(href.removeprefix(server.url))
        assert status == 200 and headers["Content-Type"].startswith("application/vnd.openxmlformats")
        check_xlsx(body, rows=22, first_local=datetime(2026, 3, 29, 0, 0))
        browser.set_window_size(390, 844)  # a phone
        browser.get(f"{server.url}/day?device=shop-1&date={DST_DAY}")
        wait(browser, lambda d: d.execute_script("return document.body.dataset.chartReady") == "1")
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 400, "the page must not scroll sideways on a phone"
        screenshot(browser, "day-phone")
        browser.set_window_size(1200, 1000)


def check_xlsx(body: bytes, rows: int, first_local: datetime) -> None:
    import openpyxl

    sheet = openpyxl.load_workbook(io.BytesIO(body)).active
    header = [c.value for c in sheet[1]]
    assert header[:4] == ["device", "hour", "local_start", "timezone"]
    assert sheet.max_row == rows + 1
    utc, local = sheet.cell(2, 2), sheet.cell(2, 3)
    assert utc.is_date and local.is_date
    assert local.value == first_local
    assert isinstance(sheet.cell(2, 5).value, int | float)


# ---- API, health, metrics, access -----------------------------------------------------------------


def test_api_healthz_and_metrics(db):
    records = seed(db)
    with Server(db) as server:
        devices = server.json("/api/v1/devices")
        assert devices["api"] == 1
        shop = next(d for d in devices["devices"] if d["device"] == "shop-1")
        assert shop["timezone"] == "Europe/Berlin" and shop["site"] == "berlin" and shop["missing_hours"] == 6 * 24 + 1
        assert devices["sites"] == [{"site": "berlin", "timezone": "Europe/Berlin", "devices": ["shop-1"]}]
        hourly = server.json(f"/api/v1/hourly?device=shop-1&since={DST_DAY}&until={DST_DAY}")
        assert len(hourly["records"]) == 22
        first = hourly["records"][0]
        assert first["local_start"] == "2026-03-29T00:00:00+01:00" and first["timezone"] == "Europe/Berlin"
        assert {k: v for k, v in first.items() if k not in ("local_start", "timezone")} == json.loads(
            encode(records[0])
        )
        days = server.json(f"/api/v1/hourly?device=shop-1&since={WEEK_BEFORE}&until={DST_DAY}&by=day")["days"]
        assert [(d["day"], d["day_hours"], d["hours"]) for d in days] == [
            ("2026-03-22", 24, 24),
            ("2026-03-29", 23, 22),
        ]
        seoul = server.json(f"/api/v1/hourly?device=shop-1&since={DST_DAY}&until={DST_DAY}&tz=Asia/Seoul")
        assert seoul["records"][0]["local_start"].endswith("+09:00")
        assert server.get("/api/v1/hourly?tz=Mars/Base")[0] == 400
        live = server.json("/api/v1/live")
        shop = next(d for d in live["devices"] if d["device"] == "shop-1")
        assert shop["in_view"] == 2 and shop["state"] == "online"
        status, _, body = server.get("/healthz")
        assert (status, body) == (200, b"ok\n")
        status, headers, body = server.get("/metrics")
        text = body.decode()
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert 'aicctv_device_last_seen_age_seconds{device="shop-1"}' in text
        assert 'aicctv_device_missing_hours{device="shop-1"} 145.0' in text
        assert 'aicctv_central_rejected_total{reason="schema"} 2.0' in text
        assert "aicctv_device_last_hour_coverage" in text and "aicctv_central_received_total" in text


def test_healthz_is_503_when_the_database_is_unreachable():
    with Server("postgresql://postgres@127.0.0.1:1/nothing") as server:
        status, _, body = server.get("/healthz")
        assert status == 503 and body.startswith(b"not ok: the database cannot be reached")
        assert server.get("/api/v1/live")[0] == 503


def test_a_non_local_bind_needs_a_credential(sqlite_db, capsys):
    seed(sqlite_db)
    code = main(["central", "serve", "--db", sqlite_db, "--listen", "0.0.0.0:8080"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "web.password_hash" in err
    token, password = "s3cret-token-123", "owner-password"
    web = {"token_hash": hash_secret(token), "password_hash": hash_secret(password)}
    with Server(sqlite_db, host="0.0.0.0", **web) as server:
        status, headers, _ = server.get("/api/v1/live")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert server.get("/", {"Authorization": "Bearer wrong-token-000"})[0] == 401
        assert server.get("/api/v1/live", {"Authorization": f"Bearer {token}"})[0] == 200
        basic = base64.b64encode(f"owner:{password}".encode()).decode()
        assert server.get("/", {"Authorization": f"Basic {basic}"})[0] == 200
        wrong_user = base64.b64encode(f"admin:{password}".encode()).decode()
        assert server.get("/", {"Authorization": f"Basic {wrong_user}"})[0] == 401
        assert server.get("/healthz")[0] == 200


def test_a_port_in_use_is_one_line_before_any_address_is_announced(sqlite_db, capsys):
    seed(sqlite_db)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code = main(["central", "serve", "--db", sqlite_db, "--listen", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in err and "--listen" in err
    assert "dashboard:" not in err


def test_hash_password_reads_stdin(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("correct horse\n"))
    assert main(["central", "hash-password"]) == 0
    hashed = capsys.readouterr().out.strip()
    assert hashed.startswith("scrypt$") and verify_secret("correct horse", hashed)
    assert not verify_secret("correct horsE", hashed)
    WebSection(password_hash=hashed)  # a valid setting


# ---- configuration and local time ---------------------------------------------------------------


def test_per_device_and_site_tables(tmp_path):
    path = tmp_path / "central.toml"
    path.write_text(
        '[display]\ntimezone = "Asia/Seoul"\n[storage]\ndb = "x.db"\n'
        '[sites.berlin]\ntimezone = "Europe/Berlin"\nopening_hours = "mon-fri 09:00-18:00"\n'
        '[devices.shop-1]\nsite = "berlin"\n[devices.lobby-2]\nopening_hours = ""\n'
    )
    config, places = load_central(path, environ={})
    assert config.storage.db == "x.db" and config.display.timezone == "Asia/Seoul"
    assert places.local("shop-1").timezone == "Europe/Berlin"
    assert places.local("shop-1").opening_hours.text == "mon-fri 09:00-18:00"
    assert places.local("lobby-2").timezone == "Asia/Seoul" and places.local("lobby-2").opening_hours.always
    assert places.local("unknown-3").timezone == "Asia/Seoul"
    assert places.members("berlin") == ["shop-1"]
    for table, message in [
        ('[devices.shop-1]\ntimezone = "Mars/Base"\n', "[devices.shop-1] timezone"),
        ('[devices.shop-1]\nopening_hours = "mon-fri 9-18"\n', "[devices.shop-1] opening_hours"),
        ('[devices.shop-1]\ncolour = "red"\n', "[devices.shop-1] colour"),
        ('[sites."bad site"]\ntimezone = "UTC"\n', "[sites.bad site]"),
        ("[devices.shop-1]\ntimezone = 9\n", "expected a string"),
    ]:
        path.write_text(table)
        with pytest.raises(ConfigError) as caught:
            load_central(path, environ={})
        assert message in str(caught.value) and "\n" not in str(caught.value), caught.value
    # The settings loader reads a copy without the tables; its messages name the real file.
    path.write_text('[web]\nrefresh_s = "fast"\n[devices.a]\nsite = "s"\n')
    with pytest.raises(ConfigError, match=f"web.refresh_s = 'fast' \\({path}\\)"):
        load_central(path, environ={})
    problems: list[str] = []
    path.write_text('[display]\ntimezone = "Nowhere/City"\n[devices.a]\nsite = "bad site"\n')
    load_central(path, environ={}, problems=problems)
    assert len(problems) == 2 and "display.timezone" in problems[0] and "[devices.a] site" in problems[1]
    assert read_places({}, DisplaySection(), "x").local().timezone == "UTC"


def test_local_days_opening_hours_and_half_hour_zones():
    assert len(day_hours(date(2026, 3, 29), BERLIN)) == 23
    assert len(day_hours(date(2026, 10, 25), BERLIN)) == 25
    assert len(day_hours(date(2026, 1, 5), BERLIN)) == 24
    kolkata = day_hours(date(2026, 1, 5), zone("Asia/Kolkata"))
    # +05:30: each UTC hour starts at hh:30 local and belongs to the local day it starts in.
    assert len(kolkata) == 24 and kolkata[0] == "2026-01-04T19:00:00Z"
    adelaide = day_hours(date(2026, 4, 5), zone("Australia/Adelaide"))  # clocks go back: 25 hours
    assert len(adelaide) == 25
    assert hour_start(parse_hour(kolkata[-1]) + 3600) == day_hours(date(2026, 1, 6), zone("Asia/Kolkata"))[0]
    hours = OpeningHours.parse("mon-fri 09:00-18:00, sat 10:00-14:00, sun 22:00-02:00")
    monday = datetime(2026, 1, 5)
    assert not hours.open_during(monday.replace(hour=8)) and hours.open_during(monday.replace(hour=8, minute=30))
    assert hours.open_during(monday.replace(hour=17)) and not hours.open_during(monday.replace(hour=18))
    assert hours.open_during(monday.replace(hour=1))  # Sunday night's span runs past midnight
    assert not hours.open_during(datetime(2026, 1, 6, 1))
    assert hours.open_on(date(2026, 1, 10)) and OpeningHours.parse("").always
    for bad in ("mon-fri", "xyz 09:00-10:00", "mon 25:00-26:00", "mon 10:00-10:00"):
        with pytest.raises(ValueError):
            OpeningHours.parse(bad)
    assert {g for g in GENDERS} and len(AGE_BANDS) == 7


def test_periods_and_day_totals_keep_the_ages_of_visitors_without_a_gender(sqlite_db):
    from central.web import queries

    counts = empty_counts()
    counts["female"]["30-39"] = 1
    bands = dict.fromkeys(AGE_BANDS, 0) | {"0-9": 2}
    records = [
        HourlyRecord("shop-1", "2026-01-05T09:00:00Z", 4, counts, 3.0, 100, 1.0, 1, 3, unknown_bands=bands),
        HourlyRecord("shop-1", "2026-01-05T10:00:00Z", 1, empty_counts(), 3.0, 100, 1.0, 1, 1),  # none such
    ]
    local = read_places({}, DisplaySection(), "x").local()
    period = queries.build_period(
        "day", date(2026, 1, 5), ["shop-1"], local, records, [], parse_hour(records[1].hour) + 7200
    )
    assert period.unknown_bands == bands and period.visitors - period.classified == 4
    (day,) = queries.day_totals(records, zone("UTC"))
    assert day["unknown_bands"] == bands and day["counts"]["female"]["30-39"] == 1
    store = open_store(sqlite_db)
    try:
        store.write(Batch(hourly=records))
    finally:
        store.close()
    with Server(sqlite_db) as server:
        status, _, body = server.get("/day?device=shop-1&date=2026-01-05")
        assert status == 200
        row = body.decode().split(">not classified</th>", 1)[1].split("</tr>", 1)[0]
        assert row == "<td>2</td>" + "<td></td>" * (len(AGE_BANDS) - 1) + "<td>4</td>"
        assert "those of them whose age was read" in body.decode()


@pytest.mark.skipif(not SCREENS, reason="set AICCTV_SCREENS=DIR to save screenshots of every page")
def test_screenshots_of_every_page(sqlite_db, browser):
    """Not a check: AICCTV_SCREENS=/tmp/aicctv-screens pytest tests/test_web.py saves the pages."""
    seed(sqlite_db)
    with Server(sqlite_db) as server:
        for name, path in [
            ("now", "/"),
            ("day", f"/day?device=shop-1&date={DST_DAY}"),
            ("week", f"/week?site=berlin&date={DST_DAY}"),
            ("devices", "/devices"),
            ("log", f"/log?device=shop-1&since={DST_DAY}&until={DST_DAY}"),
        ]:
            browser.get(server.url + path)
            if name in ("day", "week"):
                wait(browser, lambda d: d.execute_script("return document.body.dataset.chartReady") == "1")
            screenshot(browser, name)
