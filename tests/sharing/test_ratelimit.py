"""The failure counters, driven by a clock the test sets, so a window's edge falls where we say."""

import pytest

from phr.sharing import ratelimit


@pytest.fixture
def clock(monkeypatch):
    now = {"t": 1_800_000_000.0}  # a whole minute and hour: the edge is easy to place
    monkeypatch.setattr(ratelimit.time, "time", lambda: now["t"])
    return now


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.PHR_SHARE_FAILURES_PER_IP_PER_MINUTE = 2
    settings.PHR_SHARE_FAILURES_SITE_PER_HOUR = 1000


def test_a_burst_across_a_minute_edge_is_counted_whole(db, clock):
    clock["t"] -= 0.1  # the last tenth of a second of one minute...
    ratelimit.record_failure("198.51.100.1")
    clock["t"] += 0.2  # ...and the first of the next
    ratelimit.record_failure("198.51.100.1")
    assert ratelimit.is_blocked("198.51.100.1")
    assert not ratelimit.is_blocked("198.51.100.2")


def test_the_block_lifts_once_the_failures_are_two_windows_old(db, clock):
    for _ in range(2):
        ratelimit.record_failure("198.51.100.1")
    clock["t"] += 60
    assert ratelimit.is_blocked("198.51.100.1")
    clock["t"] += 60
    assert not ratelimit.is_blocked("198.51.100.1")


def test_the_site_wide_limit_holds_across_an_hour_edge(db, clock, settings):
    settings.PHR_SHARE_FAILURES_PER_IP_PER_MINUTE = 100
    settings.PHR_SHARE_FAILURES_SITE_PER_HOUR = 3
    clock["t"] -= 1
    ratelimit.record_failure("198.51.100.1")
    ratelimit.record_failure("198.51.100.2")
    clock["t"] += 2
    ratelimit.record_failure("198.51.100.3")
    assert ratelimit.is_blocked("198.51.100.4")
