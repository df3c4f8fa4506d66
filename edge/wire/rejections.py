"""Rejected inbound messages: counted by reason, reported at most once per reason per interval.

Every receiver (central, `aicctv watch`, the edge's resync command) rejects what breaks the
contract and carries on. A peer that floods a topic with garbage must not flood the journal or
the terminal as well: the first rejection of each reason is reported, the next ones of that
reason only counted until `every_s` has passed, and the next report says how many it skipped.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

REPORT_EVERY_S = 60.0
# A rejected payload's detail may quote what it was sent (a long string, a huge number), and its
# topic is the sender's to choose.
MAX_DETAIL_CHARS = 200


class Rejections:
    """Not thread-safe: each receiver rejects on one thread."""

    def __init__(self, every_s: float = REPORT_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.by_reason: Counter[str] = Counter()
        self.last = ""  # "topic: detail" of the latest rejection, reported or not
        self._every_s = every_s
        self._clock = clock
        self._reported_at: dict[str, float] = {}
        self._unreported: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return self.by_reason.total()

    def add(self, topic: str, reason: str, detail: str) -> str | None:
        """Count one rejection; the line to report it with, or None while this reason was reported
        less than `every_s` ago."""
        self.by_reason[reason] += 1
        if len(topic) > MAX_DETAIL_CHARS:
            topic = f"{topic[:MAX_DETAIL_CHARS]}… ({len(topic)} characters)"
        self.last = f"{topic}: {detail[:MAX_DETAIL_CHARS]}"
        now = self._clock()
        if now - self._reported_at.get(reason, -float("inf")) < self._every_s:
            self._unreported[reason] += 1
            return None
        self._reported_at[reason] = now
        skipped = self._unreported.pop(reason, 0)
        since = f" ({skipped} more {reason} since the last report)" if skipped else ""
        return f"{topic} ({reason}): {detail[:MAX_DETAIL_CHARS]}{since}"
