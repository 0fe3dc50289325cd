"""Counting failed redemptions, per address, per network (IPv4 /24, IPv6 /64) and for the
whole site; a hospital's wrong deposit codes per organisation.

An address or network past its limit is refused for a while: those are the guesser's own. The
site-wide count refuses nobody (a few addresses could otherwise keep every share unopenable):
past it the site is under a guessing attack, and every failed check costs a server-side delay
(`slow_down`), which caps how fast all guessers together can go while a right code still opens
at once. phr/sharing/guessing.py models what that leaves a guesser.

The counters live in the default cache, which every web process shares (the database cache in
the embedded default, Redis in production), so ten gunicorn workers do not give an attacker ten
times the guesses. Counters are kept per fixed window (this minute, this hour), and a check adds
the window before: a burst that straddles a window's edge is still counted whole, so no span of
one window ever gets more than the limit. The price is that a blocked address may wait up to two
windows, which errs the safe way.
"""

import ipaddress
import time

from django.conf import settings
from django.core.cache import cache

PREFIX = "sharing:failures"
MINUTE = 60
HOUR = 3600
# How long an address blocked by its own failures waits at most: its failures count in their
# minute and the next one.
ADDRESS_BLOCK_SECONDS = 2 * MINUTE


# Addresses of one network count together as well: an IPv4 /24 (a hospital's floor, a carrier's
# block) with room for this many people behind it; an IPv6 host is given a whole /64, so there
# the /64 is the address.
NETWORK_SHARE = 4


def _share_counters(ip: str) -> list[tuple[str, int, int]]:
    """(key prefix, limit, window seconds) for each counter a doctor's failed code or link from
    this address feeds."""
    per_address = settings.PHR_SHARE_FAILURES_PER_IP_PER_MINUTE
    counters = []
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        address = None
    if address is not None and address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped  # ::ffff:a.b.c.d is an IPv4 address
    if address is not None and address.version == 6:
        network = ipaddress.ip_network(f"{address}/64", strict=False)
        counters.append((f"{PREFIX}:net:{network}", per_address, MINUTE))
    else:
        if address is not None:
            network = ipaddress.ip_network(f"{address}/24", strict=False)
            counters.append((f"{PREFIX}:net:{network}", NETWORK_SHARE * per_address, MINUTE))
        counters.append((f"{PREFIX}:ip:{address or ip}", per_address, MINUTE))
    return counters


def _site_counter() -> tuple[str, int, int]:
    return (f"{PREFIX}:site", settings.PHR_SHARE_FAILURES_SITE_PER_HOUR, HOUR)


def _deposit_site_counter() -> tuple[str, int, int]:
    return (f"{PREFIX}:deposit:site", settings.PHR_SHARE_FAILURES_SITE_PER_HOUR, HOUR)


def _deposit_counters(organisation_id) -> list[tuple[str, int, int]]:
    """The same for a hospital's wrong deposit codes: counted per organisation (its token), not
    per address, as many hospitals send through one gateway; and apart from the doctors' counters,
    so that a hospital's mistakes never lock doctors out, nor the other way round."""
    return [
        (
            f"{PREFIX}:deposit:org:{organisation_id}",
            settings.PHR_SHARE_FAILURES_PER_IP_PER_MINUTE,
            MINUTE,
        ),
    ]


def is_blocked(ip: str) -> bool:
    """Whether this address (or its network) has used up its failed attempts for now."""
    return _blocked(_share_counters(ip or "unknown"))


def record_failure(ip: str) -> None:
    _record([*_share_counters(ip or "unknown"), _site_counter()])


def site_under_attack() -> bool:
    """Whether the doctors' failures site-wide are past PHR_SHARE_FAILURES_SITE_PER_HOUR."""
    return _blocked([_site_counter()])


def deposit_is_blocked(organisation_id) -> bool:
    return _blocked(_deposit_counters(organisation_id))


def record_deposit_failure(organisation_id) -> None:
    _record([*_deposit_counters(organisation_id), _deposit_site_counter()])


def deposit_site_under_attack() -> bool:
    return _blocked([_deposit_site_counter()])


def slow_down(under_attack: bool) -> None:
    """After a failed check: while the site is under attack, hold the answer for
    PHR_SHARE_SLOWDOWN_SECONDS. The worker is busy meanwhile, so the guessers together get at
    most (workers / delay) checks a second, however many addresses they have."""
    if under_attack:
        time.sleep(settings.PHR_SHARE_SLOWDOWN_SECONDS)


def _blocked(counters) -> bool:
    now = time.time()
    for prefix, limit, window in counters:
        this_window = int(now // window)
        counts = cache.get_many([f"{prefix}:{this_window}", f"{prefix}:{this_window - 1}"])
        if sum(counts.values()) >= limit:
            return True
    return False


def _record(counters) -> None:
    now = time.time()
    for prefix, _limit, window in counters:
        key = f"{prefix}:{int(now // window)}"
        # Kept for two windows, because the next window's checks still read it. add() creates
        # the counter only if it is missing; incr() is atomic on Redis. On the database cache
        # two processes can race and lose a count, which errs by a failure or two, never by a
        # window's worth.
        if not cache.add(key, 1, timeout=2 * window + 5):
            try:
                cache.incr(key)
            except ValueError:  # expired between add() and incr()
                cache.set(key, 1, timeout=2 * window + 5)
