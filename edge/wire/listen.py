"""Listen addresses of our small HTTP servers (the dashboard, the aiming preview): parsed one way,
and judged local or not one way, since only a loopback address may go without a credential."""

from __future__ import annotations

import ipaddress


def split_listen(value: str) -> tuple[str, int]:
    """('127.0.0.1', 8080) from '127.0.0.1:8080', '[::1]:8080' or a bare port '8080' (loopback);
    ValueError with an example otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host`: localhost or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
