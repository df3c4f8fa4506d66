"""Settings from the Devices page: pause or resume counting, opening hours, the smallest face.

`POST /settings` (a form: device, paused, min_face, opening_hours) checks the values, publishes a
retained `Settings` on `<prefix>/<device>/cmd/settings` (an offline device gets it when it comes
back) and waits a few seconds for the device's answer on `<prefix>/<device>/settings`
(docs/mqtt.md, "Settings"). The one route of the dashboard that changes anything, so:

- it needs a configured credential (web.password_hash or web.token_hash), checked by the `Auth`
  middleware like every page; without one it is refused (403), even on localhost;
- it must come from the dashboard itself: a browser's POST carries `Origin` (or `Referer`),
  which must be this server; a request with neither must use the bearer token (a script). A
  page elsewhere cannot make the owner's browser post here, although the browser would add the
  owner's basic credentials;
- each change is logged with who made it (the basic user name, or "bearer token") and from where,
  never the credential.

The dashboard keeps one broker connection (`Publisher`), opened at the first POST and shared by
every request after it: on the aicctv broker the client id is the user name, so a connection per
request would disconnect the one before it. It connects with central's [mqtt] settings as a user
of its own with the broker's `web` role, which may publish settings commands and read the devices'
answers and nothing else (deploy/mosquitto/README.md): `aicctv-broker add-user web`, given to
`aicctv central serve` through AICCTV_MQTT_USERNAME and AICCTV_MQTT_PASSWORD_FILE.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
import uuid
from datetime import UTC, datetime, tzinfo
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import anyio.to_thread
import paho.mqtt.client as paho
from starlette.requests import Request

from central.config import CentralMqttSection
from central.localtime import check_opening_hours, zone
from edge.wire.config import ConfigError, check_within
from edge.wire.contract import (
    MIN_FACE_RANGE,
    ContractError,
    Settings,
    SettingsState,
    check_device_id,
    decode,
    encode,
    parse_topic,
    topic,
)
from edge.wire.mqtt import Connection

log = logging.getLogger("aicctv.web")

ANSWER_WAIT_S = 3.0
CONNECT_WAIT_S = 5.0
PUBLISH_WAIT_S = 10.0
FORM_LIMIT = 4096  # bytes of a settings form: the page's is a few hundred


class Refused(Exception):
    """A settings request that is not allowed (403) or not valid (400); the message says why."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def parse_until(form: Any) -> float | None:
    """The pause's end from the form's `paused_until`: the page's `YYYY-MM-DDTHH:MM` in the
    device's time zone (the form's `tz`), or, from a script, ISO 8601 with a zone; None if empty."""
    text = str(form.get("paused_until", "")).strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Refused(f"paused_until = {text!r}: expected YYYY-MM-DDTHH:MM (or ISO 8601 with a zone)", 400) from None
    if moment.tzinfo is None:
        try:
            moment = moment.replace(tzinfo=zone(str(form.get("tz", ""))))
        except ValueError as exc:
            raise Refused(f"paused_until = {text!r} has no zone, and tz: {exc}", 400) from None
    return moment.timestamp()


def parse_form(form: Any, now: float) -> tuple[str, Settings]:
    """(device, Settings) from the posted form; Refused(400) naming a bad field."""
    device = str(form.get("device", ""))
    try:
        check_device_id(device)
    except ContractError as exc:
        raise Refused(f"device: {exc}", 400) from None
    paused = str(form.get("paused", "")).lower() in ("on", "true", "1", "yes")
    text = str(form.get("min_face", "")).strip()
    min_face = None
    if text:
        # The device checks the value like its config file again (with its other settings); the
        # bounds are checked here as well, so a value it must refuse is never retained for it.
        # ASCII digits only, as the contract's numbers: int() would also take "1_000" and "٣٢".
        if not (text.isascii() and text.isdigit()):
            raise Refused(f"vision.min_face = {text!r}: expected pixels", 400)
        min_face = int(text)
        try:
            check_within(min_face, *MIN_FACE_RANGE, "vision.min_face")
        except ConfigError as exc:
            raise Refused(str(exc), 400) from None
    hours = str(form.get("opening_hours", "")).strip()
    try:
        check_opening_hours(hours, "opening_hours")
        # A resume sent from the page carries the pause's old end along: nothing to end then.
        until = parse_until(form) if paused else None
        return device, Settings(paused, min_face, hours, round(now, 3), paused_until=until).validate()
    except (ConfigError, ContractError) as exc:
        raise Refused(str(exc), 400) from None


def reported(state: tuple[SettingsState, float] | None) -> dict[str, Any] | None:
    """A device's settings as it last reported them, for /api/v1/devices (times in UTC ISO 8601);
    None before any report."""
    if state is None:
        return None
    answer, received = state
    return {
        "paused": answer.paused,
        "paused_since": _iso(answer.paused_since),
        "paused_until": _iso(answer.paused_until),
        "min_face": answer.min_face,
        "opening_hours": answer.opening_hours,
        "applied": answer.applied,
        "error": answer.error,
        "issued": _iso(answer.issued),
        "reported": _iso(received),
    }


def shown(state: tuple[SettingsState, float] | None, tz: tzinfo) -> dict[str, Any] | None:
    """`reported` for the Devices page: with a sentence (`text`) and the pause's end as the form's
    `datetime-local` value (`paused_until_input`), both in the device's zone."""
    row = reported(state)
    if state is None or row is None:
        return None
    answer = state[0]

    def local(t: float | None, form: str = "%Y-%m-%d %H:%M %Z") -> str:
        return "" if t is None else datetime.fromtimestamp(t, tz).strftime(form)

    if answer.paused:
        text = f"paused since {local(answer.paused_since)}" if answer.paused_since else "paused"
        text += f", until {local(answer.paused_until)}" if answer.paused_until else ", until resumed"
    else:
        text = "counting"
    if not answer.applied:
        text += f"; the last command was rejected: {answer.error}"
    return row | {"text": text, "paused_until_input": local(answer.paused_until, "%Y-%m-%dT%H:%M")}


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def who(request: Request) -> str:
    """Who sent the request, for the log: the basic user name or "bearer token" (never a secret)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return "bearer token"
    try:
        user = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
    except (ValueError, UnicodeDecodeError):
        user = "?"
    return f"user {user!r}"


def check_origin(request: Request) -> None:
    """Refused(403) unless the request comes from this server's own pages (or a script with the
    bearer token that sends no Origin or Referer)."""
    host = request.headers.get("host", "")
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None:
        if request.headers.get("authorization", "").lower().startswith("bearer "):
            return
        raise Refused("settings: a browser's request must carry Origin (post the Devices page's form)", 403)
    if origin == "null" or urlsplit(origin).netloc != host:
        raise Refused(f"settings: the request came from {origin!r}, not from this dashboard", 403)


class Unconfirmed(Exception):
    """A command queued for the broker that the broker has not acknowledged: neither sent nor lost."""


class Publisher:
    """The dashboard's one broker connection, shared by every settings request (each of which
    runs `send` on a worker thread). Started by the first `send`, so the server starts while the
    broker is down; reconnects by itself (edge.wire.mqtt.Connection)."""

    def __init__(self, mqtt: CentralMqttSection) -> None:
        self.mqtt = mqtt
        self._connection: Connection | None = None
        self._lock = threading.Lock()
        # PUBACK reason per message id (paho's thread writes, the request's thread pops).
        self._acks: dict[int, Any] = {}
        # The answer each request waits for: (device, issued) -> its SettingsState once there.
        self._waiting: dict[tuple[str, float], list[SettingsState]] = {}
        self._answered = threading.Condition(self._lock)
        self._last_issued = 0.0

    def issued_now(self) -> float:
        """A new command's `issued`: now, to the millisecond, and after every command this server
        sent before, so that each answer names one command even for requests in the same instant."""
        with self._lock:
            self._last_issued = max(round(time.time(), 3), round(self._last_issued + 0.001, 3))
            return self._last_issued

    def _connected(self) -> Connection:
        with self._lock:
            if self._connection is None:
                m = self.mqtt
                connection = Connection(
                    m.broker_url(),
                    # One per server, also where the broker keeps the id a client asks for.
                    f"{m.client_id}-web-{uuid.uuid4().hex[:6]}",
                    version=m.version,
                    keepalive_s=m.keepalive_s,
                    ca_file=m.ca_file,
                    on_connect=lambda client, _s: client.subscribe(f"{m.prefix}/+/settings", qos=1),
                    on_message=self._on_message,
                )
                connection.client.on_publish = lambda _c, _u, mid, reason, _p: self._acks.__setitem__(mid, reason)
                connection.start()
                self._connection = connection
            connection = self._connection
        if not connection.connected.wait(CONNECT_WAIT_S):
            raise OSError(f"no connection to {connection.broker} within {CONNECT_WAIT_S:g} s (see the log)")
        return connection

    def send(self, device: str, settings: Settings, wait_s: float = ANSWER_WAIT_S) -> str:
        """Publish `settings` retained on the device's cmd/settings and wait up to `wait_s` for its
        answer; a sentence saying what happened. Raises OSError when the broker cannot be reached or
        refuses the command, Unconfirmed when the command is queued but the broker has not taken it."""
        connection = self._connected()
        key = (device, settings.issued)
        with self._lock:
            self._waiting[key] = []
        try:
            info = connection.client.publish(
                topic(self.mqtt.prefix, device, "cmd/settings"), encode(settings), qos=1, retain=True
            )
            # paho (its queue unbounded) keeps a QoS 1 message it could not send (the connection dropped, the broker is
            # slow) and sends it once connected again: past here the command may reach the device.
            with contextlib.suppress(RuntimeError):
                info.wait_for_publish(PUBLISH_WAIT_S)
            if not info.is_published():
                raise Unconfirmed(f"the broker did not confirm the command within {PUBLISH_WAIT_S:g} s")
            reason = self._acks.pop(info.mid, None)
            if reason is not None and reason.is_failure:
                raise OSError(f"the broker refused the command: {reason}")
            with self._answered:
                self._answered.wait_for(lambda: self._waiting[key], wait_s)
                answers = self._waiting[key]
        finally:
            with self._lock:
                self._waiting.pop(key, None)
        if not answers:
            return "sent; the device has not answered yet (it gets the settings when it is next connected)"
        if not answers[0].applied:
            return f"rejected by the device: {answers[0].error}"
        return "applied by the device"

    def _on_message(self, message: paho.MQTTMessage) -> None:
        try:
            device, _channel = parse_topic(self.mqtt.prefix, message.topic)
            state = cast(SettingsState, decode(SettingsState, message.payload, device=device))
        except ContractError:
            return  # a cleared retained answer, or not ours to judge: central's subscriber counts those
        with self._answered:
            answers = self._waiting.get((device, state.issued))
            if answers is not None:
                answers.append(state)
                self._answered.notify_all()

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.stop()


async def post(request: Request, publisher: Publisher, credential_required: bool) -> tuple[int, str]:
    """Handle `POST /settings`: (HTTP status, message for the page)."""
    try:
        if not credential_required:
            raise Refused("settings changes need web.password_hash or web.token_hash set (docs/central.md)", 403)
        check_origin(request)
        device, settings = parse_form(await _form(request), publisher.issued_now())
    except Refused as exc:
        log.warning("settings refused (%s from %s): %s", who(request), _client(request), exc)
        return exc.status, str(exc)
    log.info(
        "settings for %s by %s from %s: %s, min_face %s, opening hours %r",
        device,
        who(request),
        _client(request),
        ("paused" + (f" until {_iso(settings.paused_until)}" if settings.paused_until else ""))
        if settings.paused
        else "counting",
        "the device's own" if settings.min_face is None else settings.min_face,
        settings.opening_hours,
    )
    try:
        outcome = await anyio.to_thread.run_sync(publisher.send, device, settings)
    except Unconfirmed as exc:
        log.error("settings for %s not confirmed: %s", device, exc)
        return 202, (
            f"{device}: not confirmed: {exc}. The dashboard keeps the command and sends it when the broker "
            "answers, so the device may still apply it: the Devices page shows what it runs"
        )
    except (OSError, ValueError) as exc:
        log.error("settings for %s not sent: %s", device, exc)
        return 503, f"not sent: {exc}"
    log.info("settings for %s: %s", device, outcome)
    return 200, f"{device}: {outcome}"


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (what the page's form sends), first values."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise Refused("settings: post the form (application/x-www-form-urlencoded)", 400)
    # Refused on the announced length, else as soon as the stream passes the limit: a body is
    # never held beyond FORM_LIMIT bytes, however much a client sends or says it will.
    too_large = Refused(f"settings: the form is over {FORM_LIMIT} bytes", 413)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > FORM_LIMIT:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise too_large
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"
