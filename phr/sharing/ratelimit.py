"""Counting failed redemptions, per address and for the whole site.

The counters live in the default cache, which every web process shares (the database cache in
the embedded default, Redis in production), so ten gunicorn workers do not give an attacker ten
times the guesses. Windows are fixed (this minute, this hour): simple, and the worst case of a
burst across a window's edge is at most twice the limit, which the published figures allow for.
"""

import time

from django.conf import settings
from django.core.cache import cache

PREFIX = "sharing:failures"
MINUTE = 60
HOUR = 3600


def _keys(ip: str, now: float) -> list[tuple[str, int, int]]:
    """(cache key, limit, window seconds) for each counter this address's failure feeds."""
    return [
        (
            f"{PREFIX}:ip:{ip}:{int(now // MINUTE)}",
            settings.PHR_SHARE_FAILURES_PER_IP_PER_MINUTE,
            MINUTE,
        ),
        (
            f"{PREFIX}:site:{int(now // HOUR)}",
            settings.PHR_SHARE_FAILURES_SITE_PER_HOUR,
            HOUR,
        ),
    ]


def is_blocked(ip: str) -> bool:
    """Whether this address (or the whole site) has used up its failed attempts for now."""
    now = time.time()
    for key, limit, _window in _keys(ip or "unknown", now):
        if (cache.get(key) or 0) >= limit:
            return True
    return False


def record_failure(ip: str) -> None:
    now = time.time()
    for key, _limit, window in _keys(ip or "unknown", now):
        # add() creates the counter only if it is missing; incr() is atomic on Redis. On the
        # database cache two processes can race and lose a count, which errs by a failure or
        # two, never by a window's worth.
        if not cache.add(key, 1, timeout=window + 5):
            try:
                cache.incr(key)
            except ValueError:  # expired between add() and incr()
                cache.set(key, 1, timeout=window + 5)
