"""`aicctv central export`: JSON lines that stay the MQTT payloads (local fields only with --tz),
CSV with a byte-order mark, local times and a chosen delimiter, XLSX with real date cells."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import datetime

import openpyxl
import pytest

from central.store import Batch, open_store
from edge.cli.main import main
from edge.wire.contract import HourlyRecord, empty_counts, encode
from edge.wire.export import CSV_FIELDS, LOCAL_CSV_FIELDS

HOURS = ["2026-03-28T23:00:00Z", "2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z"]  # Berlin: 00:00, 01:00, 03:00


def record(hour: str, n: int, device: str = "shop-1") -> HourlyRecord:
    counts = empty_counts()
    counts["female"]["20-29"] = n
    return HourlyRecord(device, hour, n + 1, counts, 3.5, 9000, 0.75, 2)


@pytest.fixture
def db(tmp_path) -> str:
    path = str(tmp_path / "central.db")
    store = open_store(path)
    store.write(Batch(hourly=[record(h, n) for n, h in enumerate(HOURS)] + [record(HOURS[0], 9, "lobby-2")]))
    store.close()
    return path


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "central.toml"
    path.write_text('[display]\ntimezone = "Asia/Seoul"\n[devices.shop-1]\ntimezone = "Europe/Berlin"\n')
    return path


def export(capsys, *args: str) -> str:
    assert main(["central", "export", *args]) == 0
    return capsys.readouterr().out


def test_json_is_the_payload_unless_tz_is_given(db, capsys):
    lines = export(capsys, "--db", db, "--device", "shop-1").splitlines()
    assert lines == [encode(record(h, n)).decode() for n, h in enumerate(HOURS)]
    local = [
        json.loads(line)
        for line in export(capsys, "--db", db, "--device", "shop-1", "--tz", "Europe/Berlin").splitlines()
    ]
    assert [r["local_start"] for r in local] == [
        "2026-03-29T00:00:00+01:00",
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
    ]
    payload = {k: v for k, v in local[0].items() if k not in ("local_start", "timezone")}
    assert payload == json.loads(encode(record(HOURS[0], 0)))
    assert local[0]["timezone"] == "Europe/Berlin"


def test_csv_has_a_bom_local_times_per_device_zone_and_a_delimiter(db, config, capsys):
    out = export(capsys, "--db", db, "--config", str(config), "--format", "csv", "--delimiter", ";")
    assert out.startswith("\ufeffdevice;hour;local_start;timezone;visitors")
    rows = list(csv.DictReader(io.StringIO(out.removeprefix("\ufeff")), delimiter=";"))
    assert tuple(rows[0]) == LOCAL_CSV_FIELDS and set(CSV_FIELDS) < set(LOCAL_CSV_FIELDS)
    by = {(r["device"], r["hour"]): r for r in rows}
    assert by[("shop-1", HOURS[2])]["local_start"] == "2026-03-29T03:00:00+02:00"
    assert by[("lobby-2", HOURS[0])]["local_start"] == "2026-03-29T08:00:00+09:00"  # [display] zone
    assert by[("lobby-2", HOURS[0])]["timezone"] == "Asia/Seoul"
    out = export(capsys, "--db", db, "--format", "csv", "--tz", "America/New_York", "--device", "lobby-2")
    assert out.splitlines()[1].split(",")[2:4] == ["2026-03-28T19:00:00-04:00", "America/New_York"]


def test_xlsx_has_date_cells(db, config, capsys, monkeypatch):
    binary = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(binary))
    assert (
        main(["central", "export", "--db", db, "--config", str(config), "--format", "xlsx", "--device", "shop-1"]) == 0
    )
    sheet = openpyxl.load_workbook(io.BytesIO(binary.getvalue())).active
    assert tuple(c.value for c in sheet[1]) == LOCAL_CSV_FIELDS
    assert sheet.max_row == 4
    assert sheet.cell(4, 2).is_date and sheet.cell(4, 2).value == datetime(2026, 3, 29, 1, 0)
    assert sheet.cell(4, 3).is_date and sheet.cell(4, 3).value == datetime(2026, 3, 29, 3, 0)
    assert sheet.cell(4, 4).value == "Europe/Berlin"
    assert sheet.cell(4, 5).value == 3 and sheet.cell(4, LOCAL_CSV_FIELDS.index("coverage") + 1).value == 0.75


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tz", "Nowhere/City"], "unknown time zone 'Nowhere/City'"),
        (["--delimiter", ";;"], "one character"),
    ],
)
def test_bad_options_are_usage_errors(db, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["central", "export", "--db", db, *argv])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
