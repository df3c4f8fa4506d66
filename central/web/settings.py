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

The web server connects to the broker with central's [mqtt] settings and the client id
`<mqtt.client_id>-web`. On the aicctv broker (which uses the user name as client id) give
`aicctv central serve` a user of its own, e.g. `aicctv-broker add-user central-web`, through
AICCTV_MQTT_USERNAME and AICCTV_MQTT_PASSWORD_FILE, or it would take over the subscriber's session.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio.to_thread
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from starlette.requests import Request

from central.config import CentralMqttSection
from central.localtime import check_opening_hours
from edge.wire.config import ConfigError
from edge.wire.contract import (
    ContractError,
    Settings,
    SettingsState,
    check_device_id,
    decode,
    encode,
    topic,
)

log = logging.getLogger("aicctv.web")

ANSWER_WAIT_S = 3.0


class Refused(Exception):
    """A settings request that is not allowed (403) or not valid (400); the message says why."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


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
        # Only the form is checked here (central knows no vision settings): the device checks the
        # value exactly like its config file and answers, and the page shows that answer.
        try:
            min_face = int(text)
        except ValueError:
            raise Refused(f"vision.min_face = {text!r}: expected pixels", 400) from None
    hours = str(form.get("opening_hours", "")).strip()
    try:
        check_opening_hours(hours, "opening_hours")
        return device, Settings(paused, min_face, hours, round(now, 3)).validate()
    except (ConfigError, ContractError) as exc:
        raise Refused(str(exc), 400) from None


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


def publish(mqtt: CentralMqttSection, device: str, settings: Settings, wait_s: float = ANSWER_WAIT_S) -> str:
    """Publish `settings` retained on the device's cmd/settings and wait up to `wait_s` for its
    answer; a sentence saying what happened. Raises OSError when the broker cannot be reached or
    refuses the command."""
    command_topic = topic(mqtt.prefix, device, "cmd/settings")
    state_topic = topic(mqtt.prefix, device, "settings")
    url = mqtt.broker_url()
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{mqtt.client_id}-web-{uuid.uuid4().hex[:6]}",
        protocol=paho.MQTTv5 if mqtt.version == 5 else paho.MQTTv311,
    )
    if url.username:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set(ca_certs=mqtt.ca_file)
    connected, subscribed, answered = threading.Event(), threading.Event(), threading.Event()
    refused: list[str] = []
    states: list[SettingsState] = []

    def on_connect(_c: paho.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if reason.is_failure:
            refused.append(f"the broker refused the connection: {reason}")
        connected.set()

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        try:
            state = decode(SettingsState, message.payload, device=device)
        except ContractError:
            return
        if state.issued == settings.issued:  # type: ignore[union-attr]
            states.append(state)  # type: ignore[arg-type]
            answered.set()

    client.on_connect = on_connect
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.connect(url.host, url.port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(10) or refused:
            raise OSError(refused[0] if refused else "no answer from the broker")
        client.subscribe(state_topic, qos=1)
        subscribed.wait(5)
        info = client.publish(command_topic, encode(settings), qos=1, retain=True)
        info.wait_for_publish(10)
        if not info.is_published():
            raise OSError("the broker did not take the command")
        if not answered.wait(wait_s):
            return "sent; the device has not answered yet (it gets the settings when it is next connected)"
        state = states[0]
        if not state.applied:
            return f"rejected by the device: {state.error}"
        return "applied by the device"
    finally:
        client.disconnect()
        client.loop_stop()


async def post(request: Request, mqtt: CentralMqttSection, credential_required: bool) -> tuple[int, str]:
    """Handle `POST /settings`: (HTTP status, message for the page)."""
    try:
        if not credential_required:
            raise Refused("settings changes need web.password_hash or web.token_hash set (docs/central.md)", 403)
        check_origin(request)
        device, settings = parse_form(await _form(request), time.time())
    except Refused as exc:
        log.warning("settings refused (%s from %s): %s", who(request), _client(request), exc)
        return exc.status, str(exc)
    log.info(
        "settings for %s by %s from %s: %s, min_face %s, opening hours %r",
        device,
        who(request),
        _client(request),
        "paused" if settings.paused else "counting",
        "the device's own" if settings.min_face is None else settings.min_face,
        settings.opening_hours,
    )
    try:
        outcome = await anyio.to_thread.run_sync(publish, mqtt, device, settings)
    except (OSError, ValueError) as exc:
        log.error("settings for %s not sent: %s", device, exc)
        return 503, f"not sent: the broker cannot be reached ({exc})"
    log.info("settings for %s: %s", device, outcome)
    return 200, f"{device}: {outcome}"


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (what the page's form sends), first values."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise Refused("settings: post the form (application/x-www-form-urlencoded)", 400)
    body = await request.body()
    if len(body) > 4096:
        raise Refused("settings: form too large", 400)
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"
