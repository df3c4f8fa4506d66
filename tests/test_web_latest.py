"""The period pages open where the data is (issue 23): without a date, and with nothing in the log
for today (this week, month), on the latest that has data, saying so; the demo prints a link that
shows its visitors without any typing. A real server over a real log, the pages in Chromium."""

from __future__ import annotations

import json
import time

from central.localtime import today
from central.store import Batch, open_store
from edge.cli.demo import DEVICE, day_link
from edge.wire.contract import hour_start
from tests import test_web
from tests.test_web import BERLIN, DST_DAY, Server, day_records, record, seed, wait

browser = test_web.browser  # the module's headless Chromium fixture


def shown(driver, path: str) -> tuple[str, int, str | None]:
    """(heading, total visitors, the notice if any) of a period page once its chart is drawn."""
    driver.get(path)
    wait(driver, lambda d: d.execute_script("return document.body.dataset.chartReady") == "1")
    notices = driver.find_elements("id", "latest-notice")
    total = int(driver.find_element("id", "total-visitors").text)
    return driver.find_element("tag name", "h1").text, total, notices[0].text if notices else None


def test_a_period_page_without_a_date_opens_on_the_latest_data(tmp_path, browser):
    db = str(tmp_path / "central.db")
    seed(db)
    day_total = sum(r.visitors for r in day_records("shop-1", DST_DAY, BERLIN, skip=5, partial=12))
    this_day = today(BERLIN, time.time())
    with Server(db) as server:
        heading, total, notice = shown(browser, f"{server.url}/day?device=shop-1")
        assert heading == "Shop: Sunday 2026-03-29" and total == day_total
        assert notice == f"Nothing in the log for today ({this_day}): showing the latest day with data."
        test_web.screenshot(browser, "day-latest")
        heading, _, notice = shown(browser, f"{server.url}/week?site=berlin")
        assert heading == "site berlin: week of 2026-03-23 to 2026-03-29" and "this week" in notice
        heading, _, notice = shown(browser, f"{server.url}/month")
        assert heading == "all devices: March 2026" and "this month" in notice
        # "today" means today, empty or not; a date asked for is shown as asked.
        browser.get(f"{server.url}/day?device=shop-1")
        browser.find_element("link text", "today").click()
        wait(browser, lambda d: d.execute_script("return document.body.dataset.chartReady") == "1")
        assert browser.find_element("tag name", "h1").text.endswith(str(this_day))
        assert not browser.find_elements("id", "latest-notice")
        assert shown(browser, f"{server.url}/day?device=shop-1&date=2026-03-28")[1:] == (0, None)
        # Once today has data, today it is.
        store = open_store(db)
        store.write(Batch(hourly=[record("shop-1", hour_start(time.time()), 4)]))
        store.close()
        heading, total, notice = shown(browser, f"{server.url}/day?device=shop-1")
        assert heading.endswith(str(this_day)) and total == 4 and notice is None


def test_the_demos_link_shows_its_visitors(tmp_path, browser):
    records = [record(DEVICE, "2026-01-05T09:00:00Z", 4), record(DEVICE, "2026-01-05T10:00:00Z", 3)]
    db = str(tmp_path / "central.db")
    store = open_store(db)
    store.write(Batch(hourly=records))
    store.close()
    with Server(db) as server:
        _, total, notice = shown(browser, day_link(f"{server.url}/", records))
        chart = json.loads(browser.find_element("id", "chart-data").get_attribute("textContent"))
    assert total == 7 and notice is None and chart["visitors"][9:11] == [4, 3]
