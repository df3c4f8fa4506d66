import sqlite3
from pathlib import Path

import cv2
import pytest

from edge.cli.main import main
from edge.cli.plot import plot
from edge.cli.stats import device_table, read_hourly, tables
from edge.daemon.store import EdgeStore
from edge.wire.contract import AGE_BANDS, HourlyRecord, empty_counts, encode


def record(hour: str, female: int = 0, male: int = 0, unclassified: int = 0, coverage: float = 1.0, device="shop-1"):
    counts = empty_counts()
    counts["female"]["20-29"] = female
    counts["male"]["60+"] = male
    visitors = female + male + unclassified
    return HourlyRecord(device, hour, visitors, counts, 10.0, 9000, coverage, 1)


RECORDS = [
    record("2026-01-05T09:00:00Z", female=3, male=1),
    record("2026-01-05T10:00:00Z", female=1, unclassified=1, coverage=0.5),
    # 11:00 and 12:00 missing: the device was off.
    record("2026-01-05T13:00:00Z", male=2),
    record("2026-01-05T09:00:00Z", female=7, device="lobby-2"),
]


@pytest.fixture
def edge_log(tmp_path: Path) -> Path:
    path = tmp_path / "edge.db"
    store = EdgeStore(path)
    for r in RECORDS:
        store.save_hourly(r)
    store.close()
    return path


@pytest.fixture
def central_log(tmp_path: Path) -> Path:
    """A table shaped like central/store.py's: other columns around device, hour and record."""
    path = tmp_path / "central.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE hourly (device TEXT NOT NULL, hour TEXT NOT NULL, revision INTEGER NOT NULL,"
            " record TEXT NOT NULL, visitors INTEGER NOT NULL, received DOUBLE PRECISION NOT NULL,"
            " PRIMARY KEY (device, hour))"
        )
        conn.executemany(
            "INSERT INTO hourly VALUES (?, ?, 1, ?, ?, 0)",
            [(r.device, r.hour, encode(r).decode(), r.visitors) for r in RECORDS],
        )
    conn.close()
    return path


def stats(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["stats", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_has_a_line_per_hour_gap_lines_partial_marks_and_totals():
    text = device_table(RECORDS[:3])
    lines = text.splitlines()
    assert lines[0] == "shop-1: 3 hours recorded, 2026-01-05 09:00 to 2026-01-05 13:00 UTC"
    assert "female" in lines[1] and "male" in lines[1]
    assert lines[2].split()[:4] == ["hour", "(UTC)", "visitors", "coverage"]
    nine = next(line for line in lines if line.startswith("2026-01-05 09:00"))
    # visitors, coverage, dwell, then 7 female bands (3 in 20-29), then 7 male bands (1 in 60+).
    assert nine.split()[2:] == ["4", "100%", "10.0s", "0", "0", "3", "0", "0", "0", "0", *["0"] * 6, "1"]
    assert "50%*" in next(line for line in lines if line.startswith("2026-01-05 10:00"))
    assert "2 hours without a record" in text
    total = next(line for line in lines if line.startswith("total"))
    # 8 visitors over a 5-hour span covered 2.5 hours: 50%, marked as incomplete.
    assert total.split()[:6] == ["total", "(5", "h)", "8", "50%*", "10.0s"]
    assert lines[-1].startswith("* partial hour (1)")
    # Columns line up: every hour row and the totals are as long as the header.
    rows = [line for line in lines if line.startswith(("2026", "total"))]
    assert {len(line.rstrip()) for line in rows} == {len(lines[2])}


def test_ages_of_visitors_without_a_gender_are_told_under_the_table():
    from dataclasses import replace

    assert "no gender" not in device_table(RECORDS[:3])
    bands = dict.fromkeys(AGE_BANDS, 0) | {"0-9": 2, "60+": 1}
    unsure = replace(record("2026-01-05T14:00:00Z", female=1, unclassified=4), unknown=4, unknown_bands=bands)
    last = device_table([*RECORDS[:3], unsure]).splitlines()[-1]
    assert last == "not in the table, no gender (not sure) but an age read: 3 (0-9 2, 60+ 1)"


def test_every_device_gets_its_own_table():
    text = tables(RECORDS)
    assert text.index("lobby-2:") < text.index("shop-1:")
    assert "\n\n" in text


@pytest.mark.parametrize("log", ["edge_log", "central_log"])
def test_reads_both_logs_read_only_and_filters(request, log):
    path = request.getfixturevalue(log)
    before = path.stat().st_mtime_ns
    assert read_hourly(str(path)) == sorted(RECORDS, key=lambda r: (r.device, r.hour))
    assert read_hourly(str(path), device="shop-1", since="2026-01-05T10:00:00Z") == [RECORDS[1], RECORDS[2]]
    assert read_hourly(str(path), until="2026-01-05T09:00:00Z") == [RECORDS[3], RECORDS[0]]
    assert path.stat().st_mtime_ns == before


def test_a_damaged_row_is_skipped_not_fatal(central_log, caplog):
    with sqlite3.connect(central_log) as conn:
        conn.execute("UPDATE hourly SET record = '{\"schema\": 9}' WHERE device = 'lobby-2'")
    conn.close()
    assert read_hourly(str(central_log)) == RECORDS[:3]
    assert "unknown schema version 9" in caplog.text


def test_cli_prints_tables_and_draws_a_legible_plot(capsys, edge_log, tmp_path):
    png = tmp_path / "hours.png"
    code, out, _ = stats(capsys, "--db", str(edge_log), "--since", "2026-01-05T09:00:00Z", "--plot", str(png))
    assert code == 0
    assert "shop-1: 3 hours recorded" in out and "lobby-2: 1 hour recorded" in out
    image = cv2.imread(str(png))
    # One panel per device, wide enough for hour labels, with bars in both gender colours.
    assert image.shape[0] >= 2 * 300 and 700 <= image.shape[1] <= 2000
    assert f"({image.shape[1]}x{image.shape[0]})" in out
    for bgr in [(0, 159, 230), (178, 114, 0)]:
        assert (image == bgr).all(axis=2).sum() > 500


def test_plot_of_a_month_stays_a_readable_size(tmp_path):
    from edge.wire.contract import hour_start, parse_hour

    start = parse_hour("2026-01-01T00:00:00Z")
    month = [record(hour_start(start + h * 3600), female=h % 24) for h in range(24 * 31)]
    assert plot(month, tmp_path / "month.png") == (1800, 340)


def test_no_matching_record_is_not_an_error(capsys, edge_log):
    code, out, err = stats(capsys, "--db", str(edge_log), "--device", "nobody")
    assert code == 0 and out == "" and "no hourly records for device nobody" in err


def sqlite_without_hourly(folder: Path) -> Path:
    path = folder / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE visits (x)")
    conn.close()
    return path


def text_file(folder: Path) -> Path:
    path = folder / "notes.db"
    path.write_text("not a database " * 100)
    return path


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda folder: folder / "missing.db", "no log at"),
        (sqlite_without_hourly, "has no table 'hourly'"),
        (text_file, "not a readable SQLite log"),
    ],
    ids=["missing", "no-hourly-table", "not-sqlite"],
)
def test_a_bad_db_is_a_one_line_usage_error(capsys, tmp_path, make, says):
    code, out, err = stats(capsys, "--db", str(make(tmp_path)))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and says in err
    assert "--db" in err  # and what to pass instead


def test_plot_needs_an_image_extension(capsys, edge_log, tmp_path):
    code, _, err = stats(capsys, "--db", str(edge_log), "--plot", str(tmp_path / "hours.txt"))
    assert code == 2 and err.startswith("error: --plot") and len(err.strip().splitlines()) == 1


def test_reads_the_central_log_in_postgresql(postgres_url):
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE hourly (device TEXT, hour TEXT, record JSONB, PRIMARY KEY (device, hour))")
        for r in RECORDS:
            conn.execute("INSERT INTO hourly VALUES (%s, %s, %s)", (r.device, r.hour, encode(r).decode()))
    assert read_hourly(postgres_url, device="shop-1") == RECORDS[:3]


def test_a_few_seconds_of_an_hour_show_as_under_one_percent_not_zero():
    text = device_table(
        [record("2026-01-05T09:00:00Z", coverage=12 / 3600), record("2026-01-05T10:00:00Z", coverage=0.0)]
    )
    rows = [line.split()[3] for line in text.splitlines() if line.startswith("2026")]
    assert rows == ["<1%*", "0%*"]


def test_tz_labels_hours_with_their_local_start(capsys, central_log, tmp_path):
    code, out, _ = stats(capsys, "--db", str(central_log), "--device", "shop-1", "--tz", "Asia/Seoul")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "shop-1: 3 hours recorded, 2026-01-05 18:00 to 2026-01-05 22:00 Asia/Seoul"
    assert lines[2].split()[:2] == ["hour", "(Asia/Seoul)"]
    assert any(line.startswith("2026-01-05 18:00") for line in lines)
    # A half-hour zone: an hour is labelled with its local start.
    code, out, _ = stats(capsys, "--db", str(central_log), "--device", "lobby-2", "--tz", "Asia/Kolkata")
    assert "2026-01-05 14:30" in out
    # Each device's configured zone.
    config = tmp_path / "central.toml"
    config.write_text('[display]\ntimezone = "Europe/Berlin"\n[devices.lobby-2]\ntimezone = "America/New_York"\n')
    code, out, _ = stats(capsys, "--db", str(central_log), "--config", str(config))
    assert "lobby-2: 1 hour recorded, 2026-01-05 04:00 to 2026-01-05 04:00 America/New_York" in out
    assert "shop-1: 3 hours recorded, 2026-01-05 10:00 to 2026-01-05 14:00 Europe/Berlin" in out


def test_an_unknown_zone_is_a_usage_error(capsys, central_log):
    with pytest.raises(SystemExit) as exit_:
        main(["stats", "--db", str(central_log), "--tz", "Mars/Base"])
    assert exit_.value.code == 2 and "unknown time zone 'Mars/Base'" in capsys.readouterr().err
