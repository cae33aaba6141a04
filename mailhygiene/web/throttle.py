"""Failed logins per user name, in memory: too many in a while and that name waits."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from threading import Lock

MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)


class LoginThrottle:
    """Failed logins per name in a sliding window (forgotten by a restart).

    After ``limit`` failures for one name within ``window`` that name is refused until
    the oldest of them leaves the window. Counted by name, not address: behind a
    reverse proxy every browser has the proxy's address.
    """

    def __init__(self, limit: int = MAX_FAILURES, window: timedelta = FAILURE_WINDOW) -> None:
        self._limit = limit
        self._window = window
        self._failures: dict[str, deque[datetime]] = {}
        self._lock = Lock()

    def wait(self, name: str, now: datetime) -> timedelta | None:
        """How long ``name`` must wait before another try, or None."""
        with self._lock:
            recent = self._recent(name.casefold(), now)
            if len(recent) < self._limit:
                return None
            return recent[0] + self._window - now

    def failed(self, name: str, now: datetime) -> None:
        with self._lock:
            self._recent(name.casefold(), now).append(now)
            if len(self._failures) > 10_000:
                # why: names are chosen by whoever types them; memory must stay flat
                for key in [k for k, v in self._failures.items() if not v]:
                    del self._failures[key]

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name.casefold(), None)

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        recent = self._failures.setdefault(key, deque())
        while recent and now - recent[0] > self._window:
            recent.popleft()
        return recent


__all__ = ["FAILURE_WINDOW", "MAX_FAILURES", "LoginThrottle"]
