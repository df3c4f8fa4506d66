"""`aicctv central serve`: the owner's dashboard and a read-only JSON API over the central log.

Pages (server-rendered with Jinja2; Chart.js and our script are shipped in static/, nothing comes
from the internet): Now (live), Day / Week / Month (per device, per site or every device), Devices
(health) and Log (records, CSV and XLSX downloads). API under /api/v1/ (see docs/api.md),
/healthz and /metrics (Prometheus). Nothing here writes to the log.

Further routes (settings, Home Assistant, Grafana) are added with `routes` / `app.router`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import anyio.to_thread
import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from central.config import CentralConfig, Places, WebSection, verify_secret
from central.localtime import day_hours, local_day, local_start, today, zone
from central.store import CentralStore, StoreError
from central.web import metrics, queries, settings
from central.web.queries import KINDS, Reader
from edge.wire.config import ConfigError, redact
from edge.wire.contract import (
    AGE_BANDS,
    GENDERS,
    MIN_FACE_RANGE,
    ContractError,
    HourlyRecord,
    check_device_id,
    hour_start,
)
from edge.wire.export import json_line, percent_covered, write_records, write_xlsx
from edge.wire.listen import is_loopback, split_listen

log = logging.getLogger("aicctv.web")

API_VERSION = 1
HERE = Path(__file__).parent
NAV = (
    ("now", "Now", "./"),
    ("day", "Day", "day"),
    ("week", "Week", "week"),
    ("month", "Month", "month"),
    ("devices", "Devices", "devices"),
    ("log", "Log", "log"),
)
LOG_PAGE_ROWS = 1000
# The most hourly records one request reads (an export, the API): a year of 5 devices. Each costs
# a few KB while it is decoded and written, and every read waits on one database thread, so a
# range over a whole fleet's history must not freeze the dashboard or exhaust the server.
MAX_RECORDS = 50_000
# The dates a query may name: a period and its comparison (up to five weeks either side) keep
# within what dates and Unix times hold, and every hour in them is a 'YYYY-MM-DDTHH:00:00Z'.
DATE_RANGE = (date(1970, 1, 1), date(9998, 12, 31))


class BadRequest(Exception):
    """A query parameter the API or a page cannot use; answered 400 with the message."""


# ---- access ------------------------------------------------------------------------------------


class Auth:
    """HTTP basic (web.username + web.password_hash) or bearer (web.token_hash) authentication of
    every request but /healthz, when a credential is configured.

    Hashes are scrypt, slow on purpose (16 MiB and tens of milliseconds a check), so a flood of
    wrong credentials must not become a flood of checks: a credential once verified is
    remembered by its SHA-256 (a logged-in request costs no check), so is a wrong one; at most
    CHECKS_AT_ONCE checks run together and CHECKS_WAITING wait (beyond that: 503 at once); and a
    client address with FAILURES_ALLOWED wrong or pending credentials within FAILURE_WINDOW_S is
    answered 429 without a check. Behind a reverse proxy every client is the proxy's address:
    a flood then holds off new logins for everyone, never those already made."""

    CHECKS_AT_ONCE = 2
    CHECKS_WAITING = 32
    FAILURES_ALLOWED = 10
    FAILURE_WINDOW_S = 60.0
    REMEMBERED = 1024  # credentials kept, right and wrong each; clients tracked

    def __init__(self, app: ASGIApp, web: WebSection) -> None:
        self.app = app
        self.web = web
        self.required = bool(web.password_hash or web.token_hash)
        self._good: set[bytes] = set()
        self._bad: dict[bytes, None] = {}  # insertion-ordered: the oldest is forgotten first
        self._checks = anyio.CapacityLimiter(self.CHECKS_AT_ONCE)
        self._waiting = 0
        # Per client address: times of its recent failures, and its checks under way.
        self._failures: dict[str, list[float]] = {}
        self._pending: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.required or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        headers = [value for name, value in scope["headers"] if name == b"authorization"]
        if len(headers) > 1:
            # Checked here, yet logged and matched against Origin by the routes from another: refused.
            await PlainTextResponse("one Authorization header at most\n", status_code=400)(scope, receive, send)
            return
        header = headers[0] if headers else b""
        client = scope["client"][0] if scope.get("client") else "?"
        verdict = await self._verdict(header, client) if header else 401
        if verdict == 200:
            await self.app(scope, receive, send)
            return
        if verdict == 401:
            text, headers = "authentication required\n", {"WWW-Authenticate": 'Basic realm="aicctv", charset="UTF-8"'}
        elif verdict == 429:
            text, headers = "too many wrong credentials from this address: wait a minute\n", {"Retry-After": "60"}
        else:
            text, headers = "too many logins being checked: try again shortly\n", {"Retry-After": "5"}
        await PlainTextResponse(text, status_code=verdict, headers=headers)(scope, receive, send)

    async def _verdict(self, header: bytes, client: str) -> int:
        """200 (verified), 401 (wrong), 429 (this client is throttled) or 503 (too many waiting)."""
        digest = hashlib.sha256(header).digest()
        if digest in self._good:
            return 200
        if digest in self._bad:
            self._failed(client)
            return 401
        if len(self._recent(client)) + self._pending.get(client, 0) >= self.FAILURES_ALLOWED:
            return 429
        if self._waiting >= self.CHECKS_WAITING:
            return 503
        self._waiting += 1
        self._pending[client] = self._pending.get(client, 0) + 1
        try:
            ok = await anyio.to_thread.run_sync(self._check, header, limiter=self._checks)
        finally:
            self._waiting -= 1
            self._pending[client] -= 1
            if not self._pending[client]:
                del self._pending[client]
        if ok:
            if len(self._good) < self.REMEMBERED:
                self._good.add(digest)
            return 200
        self._bad[digest] = None
        if len(self._bad) > self.REMEMBERED:
            del self._bad[next(iter(self._bad))]
        self._failed(client)
        return 401

    def _recent(self, client: str) -> list[float]:
        """When `client`'s failures within FAILURE_WINDOW_S were (the last FAILURES_ALLOWED)."""
        now = time.monotonic()
        return [t for t in self._failures.get(client, []) if now - t < self.FAILURE_WINDOW_S][-self.FAILURES_ALLOWED :]

    def _failed(self, client: str) -> None:
        self._failures[client] = [*self._recent(client), time.monotonic()]
        if len(self._failures) > self.REMEMBERED:
            # Many addresses at once: the checks' own limits still hold; forget the quietest.
            oldest = min(self._failures, key=lambda c: self._failures[c][-1])
            del self._failures[oldest]

    def _check(self, header: bytes) -> bool:
        import base64
        import hmac

        scheme, _, value = header.decode("latin-1").partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.web.token_hash:
            return verify_secret(value, self.web.token_hash)
        if scheme.lower() == "basic" and self.web.password_hash:
            try:
                user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            same_user = hmac.compare_digest(user.encode(), self.web.username.encode())
            return bool(sep) and verify_secret(password, self.web.password_hash) and same_user
        return False


class HostCheck:
    """421 to a request whose Host header names neither this machine (localhost, a loopback
    address, the address the connection came in on, the listen address) nor one of web.hosts. A
    page elsewhere that points its own name at this machine (DNS rebinding) then reads nothing,
    although the browser takes the answer as its own site's. The port is not checked: a
    rebinding name is never one of these, and an SSH tunnel's Host has its own port."""

    LOCAL = frozenset({"localhost", "127.0.0.1", "::1"})

    def __init__(self, app: ASGIApp, web: WebSection) -> None:
        self.app = app
        self.served = self.LOCAL | {split_listen(web.listen)[0].lower()} | web.host_names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"host")
        # A browser always sends Host; a request without one (HTTP/1.0) is no rebinding.
        if header is None or self._name(header.decode("latin-1")) in self.served | {_server_host(scope)}:
            await self.app(scope, receive, send)
            return
        shown = header.decode("latin-1")[:100]
        response = PlainTextResponse(
            f"this dashboard does not serve Host {shown!r}: add the name to web.hosts if it is this server's\n",
            status_code=421,
        )
        await response(scope, receive, send)

    @staticmethod
    def _name(host: str) -> str:
        """The name of a Host header without its port, lower case, without a trailing dot."""
        if host.startswith("["):
            name, bracket, _ = host[1:].partition("]")
            return name.lower() if bracket else ""
        return host.rpartition(":")[0].lower().rstrip(".") if ":" in host else host.lower().rstrip(".")


def _server_host(scope: Scope) -> str:
    server = scope.get("server")
    return str(server[0]).lower() if server else "127.0.0.1"


def check_listen(web: WebSection) -> tuple[str, int]:
    """The host and port to bind; ConfigError when that is not local and no credential is set."""
    host, port = split_listen(web.listen)
    if not is_loopback(host) and not (web.password_hash or web.token_hash):
        raise ConfigError(
            f"web.listen = {web.listen!r} is reachable from other machines: set web.password_hash or "
            "web.token_hash first (aicctv central hash-password), or listen on 127.0.0.1"
        )
    return host, port


# ---- the application ---------------------------------------------------------------------------


class Dashboard:
    def __init__(self, config: CentralConfig, places: Places, reader: Reader) -> None:
        self.config = config
        self.places = queries.config_places(config, places)
        self.reader = reader
        self.publisher = settings.Publisher(config.mqtt)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True
        )
        self.env.filters["percent_covered"] = percent_covered
        self._last_problem: str | None = None  # what /healthz last logged

    # -- helpers

    def page(self, name: str, page: str, title: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(
            page=page,
            title=title,
            nav=NAV,
            db=redact(self.config.storage.db),
            unreadable=self.reader.unreadable(examples=True),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def unavailable(self, exc: StoreError, api: bool) -> Response:
        message = f"the central log cannot be read: {redact(str(exc))}"
        if api:
            return JSONResponse({"api": API_VERSION, "error": message}, status_code=503)
        return self.page("error.html", "", "Database unavailable", status=503, message=message)

    async def guarded(self, request: Request, handler: Callable, api: bool) -> Response:
        try:
            return await handler(request)
        except BadRequest as exc:
            if api:
                return JSONResponse({"api": API_VERSION, "error": str(exc)}, status_code=400)
            return self.page("error.html", "", "Bad request", status=400, message=str(exc))
        except StoreError as exc:
            return self.unavailable(exc, api)

    def routes(self) -> list:
        def page(handler: Callable) -> Callable:
            async def endpoint(request: Request) -> Response:
                return await self.guarded(request, handler, api=False)

            return endpoint

        def api(handler: Callable) -> Callable:
            async def endpoint(request: Request) -> Response:
                return await self.guarded(request, handler, api=True)

            return endpoint

        return [
            Route("/", page(self.now)),
            *(Route(f"/{kind}", page(lambda r, k=kind: self.period(r, k))) for kind in KINDS),
            Route("/devices", page(self.devices_page)),
            Route("/settings", self.settings_post, methods=["POST"]),
            Route("/log", page(self.log_page)),
            Route("/log.csv", page(lambda r: self.download(r, "csv"))),
            Route("/log.xlsx", page(lambda r: self.download(r, "xlsx"))),
            Route("/api/v1/devices", api(self.api_devices)),
            Route("/api/v1/hourly", api(self.api_hourly)),
            Route("/api/v1/live", api(self.api_live)),
            Route("/healthz", self.healthz),
            Route("/metrics", api(self.metrics)),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]

    async def snapshot(self) -> queries.Snapshot:
        return await self.reader.run(queries.snapshot, self.places)

    def tz_param(self, request: Request) -> ZoneInfo | None:
        name = request.query_params.get("tz") or None
        if name is None:
            return None
        try:
            return zone(name)
        except ValueError as exc:
            raise BadRequest(f"tz: {exc}") from None

    def device_param(self, request: Request, name: str = "device") -> str | None:
        device = request.query_params.get(name) or None
        if device is not None:
            try:
                check_device_id(device)
            except ContractError as exc:
                raise BadRequest(f"{name}: {exc}") from None
        return device

    # -- pages

    async def now(self, request: Request) -> Response:
        snap = await self.snapshot()
        rows = [_with_texts(row) for row in queries.live_rows(snap)]
        updated = time.strftime("%H:%M:%S", time.localtime(snap.now))
        return self.page("now.html", "now", "Now", rows=rows, updated=updated, refresh_s=self.config.web.refresh_s)

    def target(self, request: Request, known: list[str]) -> tuple[str, str, list[str]]:
        """('device', id, [id]), ('site', name, members) or ('', '', every device) from ?device=,
        ?site= or ?target=kind:name (the page's selector)."""
        kind, _, name = request.query_params.get("target", ":").partition(":")
        if request.query_params.get("device"):
            kind, name = "device", request.query_params["device"]
        elif request.query_params.get("site"):
            kind, name = "site", request.query_params["site"]
        if kind == "device":
            try:
                check_device_id(name)
            except ContractError as exc:
                raise BadRequest(f"device: {exc}") from None
            return kind, name, [name]
        if kind == "site":
            members = self.places.members(name)
            if not members:
                raise BadRequest(f"site {name!r} has no devices: give devices `site = {name!r}` in central.toml")
            return kind, name, members
        return "", "", sorted(set(known) | set(self.places.devices))

    async def period(self, request: Request, kind: str) -> Response:
        known = await self.reader.run(_known_devices)
        target_kind, target_name, devices = self.target(request, known)
        local = self.places.local(
            target_name if target_kind == "device" else None, target_name if target_kind == "site" else None
        )
        tz = self.tz_param(request)
        if tz is not None:
            local = type(local)(tz.key, local.opening_hours)
        now = time.time()
        this_day = today(local.tz, now)
        anchor = _date_param(request, "date", this_day)
        records, earlier = await self.reader.run(queries.period_records, kind, anchor, devices, local)
        notice = None
        if not request.query_params.get("date") and not any(r.device in devices for r in records):
            # Nothing yet today (this week, month): open on the latest that has data instead of
            # an empty chart, and say so.
            latest = await self.reader.run(queries.latest_hour, devices if target_kind else None)
            if latest is not None:
                anchor = local_day(latest, local.tz)
                records, earlier = await self.reader.run(queries.period_records, kind, anchor, devices, local)
                current = {"day": "today", "week": "this week", "month": "this month"}[kind]
                notice = f"Nothing in the log for {current} ({this_day}): showing the latest {kind} with data."
        period = queries.build_period(kind, anchor, devices, local, records, earlier, now)
        target_query = urlencode({target_kind: target_name} if target_kind else {})

        def href(day: date) -> str:
            return f"{kind}?" + urlencode({**({target_kind: target_name} if target_kind else {}), "date": day})

        what = (
            self.places.label(target_name)
            if target_kind == "device"
            else (f"site {target_name}" if target_kind == "site" else "all devices")
        )
        first, last = period.first, period.last
        when = {
            "day": first.strftime("%A %Y-%m-%d"),
            "week": f"week of {first:%Y-%m-%d} to {last:%Y-%m-%d}",
            "month": first.strftime("%B %Y"),
        }[kind]
        compare_text = "4 weeks earlier" if kind == "month" else "a week earlier"
        chart = {
            "labels": [b.label for b in period.buckets],
            "female": [b.female for b in period.buckets],
            "male": [b.male for b in period.buckets],
            "unclassified": [b.unclassified for b in period.buckets],
            "visitors": [b.visitors for b in period.buckets],
            "compare": [b.compare for b in period.buckets],
            "coverage": [b.coverage for b in period.buckets],
            "state": [b.state for b in period.buckets],
            "closed": [b.closed for b in period.buckets],
            "total": period.visitors,
            "compare_label": compare_text,
        }
        coverage = period.coverage
        return self.page(
            "period.html",
            kind,
            f"{kind.title()} · {what}",
            period=period,
            heading=f"{what}: {when}",
            anchor=anchor.isoformat(),
            choices=queries.targets(self.places, known),
            target_kind=target_kind,
            target_name=target_name,
            target_query=target_query,
            prev_href=href(queries.shift(kind, anchor, -1)),
            next_href=href(queries.shift(kind, anchor, 1)),
            today_href=href(this_day),
            notice=notice,
            chart_json=json.dumps(chart).replace("</", "<\\/"),
            coverage_text="–" if coverage is None else percent_covered(coverage),
            partial=coverage is not None and coverage < 1,
            compare_text=compare_text,
            bucket_count=len(period.buckets),
            unit="hours" if kind == "day" else "days",
            unit_one="hour" if kind == "day" else "day",
            devices_text=f"{len(devices)} device{'s' if len(devices) != 1 else ''}",
            bands=AGE_BANDS,
            genders=GENDERS,
            b_links=kind != "day",
        )

    async def devices_page(self, request: Request) -> Response:
        snap = await self.snapshot()
        held = await self.reader.run(lambda store: store.held_hours())
        states = await self.reader.run(lambda store: store.settings())
        rows = []
        for row in queries.health_rows(snap, self.config.resync.overdue_after_s):
            row = _with_texts(row)
            missing = held.get(row["device"])
            row["missing_span"] = (
                f"{missing.missing[0][:13]}Z – {missing.missing[1][:13]}Z" if missing and missing.missing else ""
            )
            latest = row["latest_hour"]
            row["latest_text"] = _local_text(latest, zone(row["timezone"])) if latest else "none"
            row["opening_hours"] = self.places.local(row["device"]).opening_hours.text
            row["settings"] = settings.shown(states.get(row["device"]), zone(row["timezone"]))
            rows.append(row)
        counters = sorted(snap.counters.items())
        resyncs = sum(v for k, v in counters if k.startswith("resync."))
        return self.page(
            "devices.html",
            "devices",
            "Devices",
            rows=rows,
            counters=counters,
            resyncs=resyncs,
            settings_on=bool(self.config.web.password_hash or self.config.web.token_hash),
            min_face_range=MIN_FACE_RANGE,
        )

    async def settings_post(self, request: Request) -> Response:
        """POST /settings from the Devices page (central/web/settings.py)."""
        web = self.config.web
        status, message = await settings.post(request, self.publisher, bool(web.password_hash or web.token_hash))
        title = {200: "Settings sent", 202: "Settings not confirmed"}.get(status, "Settings not sent")
        return self.page("settings.html", "devices", title, status=status, message=message)

    async def hourly(
        self, devices: str | list[str] | None, since: str | None, until: str | None, limit: int | None = None
    ) -> list[HourlyRecord]:
        """The records of [since, until] of one device, several (a site's) or all: the first
        `limit`, or all of them up to MAX_RECORDS, beyond which the request is refused (400)
        rather than read."""
        if devices == []:
            return []
        records = await self.reader.run(lambda store: store.hourly(devices, since, until, limit or MAX_RECORDS + 1))
        if limit is None and len(records) > MAX_RECORDS:
            raise BadRequest(
                f"more than {MAX_RECORDS:,} hourly records from {since or 'the first'} to {until or 'the last'}: "
                "ask for fewer days or one device (the whole log: aicctv central export, on the server)"
            )
        return records

    async def log_query(
        self, request: Request, limit: int | None = None
    ) -> tuple[list[HourlyRecord], dict[str, Any], dict[str, Any]]:
        device = self.device_param(request)
        tz = self.tz_param(request)
        view_tz = tz or self.places.local(device).tz
        now_day = today(view_tz, time.time())
        since = _date_param(request, "since", now_day - timedelta(days=6))
        until = _date_param(request, "until", now_day)
        if until < since:
            raise BadRequest("until is before since")
        first, last = day_hours(since, view_tz)[0], day_hours(until, view_tz)[-1]
        records = await self.hourly(device, first, last, limit)
        zones = {} if tz is not None else {r.device: self.places.local(r.device).tz for r in records}
        params = {
            "device": device or "",
            "since": since.isoformat(),
            "until": until.isoformat(),
            "tz": request.query_params.get("tz", ""),
        }
        return records, {"tz": tz or view_tz, "zones": zones}, params

    async def log_page(self, request: Request) -> Response:
        records, zoning, params = await self.log_query(request, LOG_PAGE_ROWS + 1)
        known = await self.reader.run(_known_devices)
        rows = []
        for r in records[:LOG_PAGE_ROWS]:
            tz = zoning["zones"].get(r.device, zoning["tz"])
            rows.append(
                {
                    "device": r.device,
                    "local": local_start(r.hour, tz).strftime("%Y-%m-%d %H:%M %Z"),
                    "hour": r.hour,
                    "visitors": r.visitors,
                    "female": sum(r.counts["female"].values()),
                    "male": sum(r.counts["male"].values()),
                    "coverage": r.coverage,
                    "coverage_text": percent_covered(r.coverage),
                    "dwell": f"{r.mean_dwell_s:.1f} s",
                    "revision": r.revision,
                }
            )
        return self.page(
            "log.html",
            "log",
            "Log",
            rows=rows,
            more=len(records) > LOG_PAGE_ROWS,
            devices=sorted(set(known) | set(self.places.devices)),
            device=params["device"],
            since=params["since"],
            until=params["until"],
            tz_param=params["tz"],
            query=urlencode(params),
        )

    async def download(self, request: Request, fmt: str) -> Response:
        records, zoning, params = await self.log_query(request)
        name = f"aicctv-{params['device'] or 'all'}-{params['since']}-{params['until']}.{fmt}"
        disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
        if fmt == "xlsx":
            out = io.BytesIO()
            write_xlsx(records, out, zoning["tz"], zoning["zones"])
            media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            return Response(out.getvalue(), media_type=media, headers=disposition)
        text = io.StringIO()
        write_records(records, "csv", text, zoning["tz"], zones=zoning["zones"])
        return Response(text.getvalue().encode("utf-8"), media_type="text/csv; charset=utf-8", headers=disposition)

    # -- API

    async def api_devices(self, request: Request) -> Response:
        snap = await self.snapshot()
        states = await self.reader.run(lambda store: store.settings())
        devices = []
        for row in queries.health_rows(snap, self.config.resync.overdue_after_s):
            local = self.places.local(row["device"])
            devices.append(
                {
                    "device": row["device"],
                    "name": row["name"],
                    "site": row["site"],
                    "timezone": row["timezone"],
                    "opening_hours": local.opening_hours.text,
                    "status": row["status"],
                    "state": row["state"],
                    "last_seen": row["last_seen"],
                    "first_hour": row["first_hour"],
                    "latest_hour": row["latest_hour"],
                    "hours": row["hours"],
                    "missing_hours": row["missing_hours"],
                    "overdue_hours": row["overdue_hours"],
                    "coverage_24h": row["coverage_24h"],
                    # As the device last reported them (null before any report).
                    "settings": settings.reported(states.get(row["device"])),
                }
            )
        sites = sorted(set(self.places.sites) | {p.site for p in self.places.devices.values() if p.site})
        site_rows = [
            {"site": s, "timezone": self.places.local(site=s).timezone, "devices": self.places.members(s)}
            for s in sites
        ]
        return JSONResponse({"api": API_VERSION, "devices": devices, "sites": site_rows})

    async def api_live(self, request: Request) -> Response:
        snap = await self.snapshot()
        return JSONResponse({"api": API_VERSION, "now": snap.now, "devices": queries.live_rows(snap)})

    async def api_hourly(self, request: Request) -> Response:
        by = request.query_params.get("by", "hour")
        if by not in ("hour", "day"):
            raise BadRequest("by: hour or day")
        device = self.device_param(request)
        site = request.query_params.get("site") or None
        tz = self.tz_param(request)
        members = self.places.members(site) if site else None
        if site and not members:
            raise BadRequest(f"site {site!r} has no devices")
        # A site's devices are read in the query, so other devices' records never count to the cap.
        devices = device if members is None else [m for m in members if device in (None, m)]
        range_tz = tz or self.places.local(device, site).tz
        since = _bound(request, "since", range_tz, first=True)
        until = _bound(request, "until", range_tz, first=False)
        if since and until and until < since:
            raise BadRequest("until is before since")
        records = await self.hourly(devices, since, until)
        body: dict[str, Any] = {"api": API_VERSION, "by": by, "since": since, "until": until}
        if by == "hour":
            body["records"] = [json.loads(json_line(r, tz or self.places.local(r.device).tz)) for r in records]
            return JSONResponse(body)
        if site:
            body["days"] = queries.day_totals(records, range_tz, group=lambda r: site)
            for entry in body["days"]:
                entry.pop("device")
                entry["site"] = site
        else:
            by_zone: dict[Any, list[HourlyRecord]] = {}
            for r in records:
                by_zone.setdefault(tz or self.places.local(r.device).tz, []).append(r)
            body["days"] = sorted(
                (entry for z, rs in by_zone.items() for entry in queries.day_totals(rs, z)),
                key=lambda e: (e["device"], e["day"]),
            )
        return JSONResponse(body)

    async def healthz(self, request: Request) -> Response:
        """ok, or 503 and what is wrong, for anyone who asks (it needs no credential): so never
        the database's address, port or role names. The full message goes to the server's log."""
        try:
            await self.reader.run(queries.ping)
            problem = self.reader.unreadable(examples=False)
            detail = problem
        except StoreError as exc:
            problem, detail = exc.public, str(exc)
        if detail != self._last_problem:
            self._last_problem = detail
            if detail is not None:
                log.warning("not healthy: %s", redact(detail))
        if problem is not None:
            return PlainTextResponse(f"not ok: {problem}\n", status_code=503)
        return PlainTextResponse("ok\n")

    async def metrics(self, request: Request) -> Response:
        body = await self.reader.run(metrics.exposition, self.places, self.config.resync.overdue_after_s)
        return Response(body, media_type=metrics.CONTENT_TYPE)


def _known_devices(store: CentralStore) -> list[str]:
    hourly = {d for (d,) in queries.read(store, "SELECT DISTINCT device FROM hourly")}
    return sorted(hourly | set(store.statuses()) | set(store.live()))


def _in_range(name: str, text: str, day: date) -> date:
    """`day` if the pages and the API can work with it: a period or its comparison around it
    stays within what dates and Unix times can hold, its hours within 'YYYY-MM-DDTHH:00:00Z'."""
    if not DATE_RANGE[0] <= day <= DATE_RANGE[1]:
        raise BadRequest(f"{name}={text!r}: out of range: from {DATE_RANGE[0]} to {DATE_RANGE[1]}")
    return day


def _date_param(request: Request, name: str, default: date) -> date:
    text = request.query_params.get(name)
    if not text:
        return default
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name}={text!r}: expected a date YYYY-MM-DD") from None
    return _in_range(name, text, day)


def _bound(request: Request, name: str, tz: Any, first: bool) -> str | None:
    """An hour bound from a local date (its first or last hour) or an ISO 8601 instant with zone."""
    text = request.query_params.get(name)
    if not text:
        return None
    if len(text) == 10:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise BadRequest(f"{name}={text!r}: expected YYYY-MM-DD or an ISO 8601 time with zone") from None
        hours = day_hours(_in_range(name, text, day), tz)
        return hours[0] if first else hours[-1]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name}={text!r}: expected YYYY-MM-DD or an ISO 8601 time with zone") from None
    if moment.tzinfo is None:
        raise BadRequest(f"{name}={text!r}: give a zone (Z or +09:00), or a date")
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = datetime.min if moment.year == 1 else datetime.max  # beyond the range either way
    _in_range(name, text, utc.date())
    return hour_start(utc.timestamp())


def _local_text(hour: str, tz: Any) -> str:
    return local_start(hour, tz).strftime("%Y-%m-%d %H:%M %Z")


def _age_text(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"{round(seconds)} s ago"
    if seconds < 5400:
        return f"{round(seconds / 60)} min ago"
    if seconds < 172800:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"


def _with_texts(row: dict[str, Any]) -> dict[str, Any]:
    last = row["last_hour"]
    return row | {
        "last_hour_text": "none yet"
        if last is None
        else f"{last['local_start'][:10]} {last['local_start'][11:16]}: {last['visitors']} visitors",
        "coverage_text": "–" if last is None else f"{int(last['coverage'] * 100)}%",
        "last_seen_text": _age_text(row["last_seen_age_s"]),
    }


def create_app(config: CentralConfig, places: Places, db: str | None = None) -> Starlette:
    """The dashboard over `db` (default: storage.db). The database is opened on the first request
    (and again after a failure), so the server starts while the database is down."""
    reader = Reader(db or config.storage.db)
    dashboard = Dashboard(config, places, reader)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        reader.close()
        dashboard.publisher.close()

    app = Starlette(routes=dashboard.routes(), lifespan=lifespan)
    app.state.dashboard = dashboard
    app.add_middleware(Auth, web=config.web)
    # Outermost: a request for another site is refused before it costs a password check.
    app.add_middleware(HostCheck, web=config.web)
    return app
