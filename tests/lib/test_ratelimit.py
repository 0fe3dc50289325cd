"""The failure counters, driven by a clock the test sets, so a window's edge falls where we say."""

import pytest

from phr.lib import ratelimit


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


def test_the_site_wide_threshold_holds_across_an_hour_edge_and_blocks_nobody(db, clock, settings):
    settings.PHR_SHARE_FAILURES_PER_IP_PER_MINUTE = 100
    settings.PHR_SHARE_FAILURES_SITE_PER_HOUR = 3
    clock["t"] -= 1
    ratelimit.record_failure("198.51.100.1")
    ratelimit.record_failure("198.51.100.2")
    assert not ratelimit.site_under_attack()
    clock["t"] += 2
    ratelimit.record_failure("198.51.100.3")
    assert ratelimit.site_under_attack()
    # Slowed, not refused: an address that has done nothing wrong is not blocked.
    assert not ratelimit.is_blocked("198.51.100.4")


def test_hospitals_deposit_failures_slow_but_never_block_other_hospitals(db, clock, settings):
    settings.PHR_SHARE_FAILURES_PER_IP_PER_MINUTE = 100
    settings.PHR_SHARE_FAILURES_SITE_PER_HOUR = 3
    for organisation in (1, 2, 3):
        ratelimit.record_deposit_failure(organisation)
    assert ratelimit.deposit_site_under_attack()
    assert not ratelimit.deposit_is_blocked(4)
    assert not ratelimit.site_under_attack()  # the doctors' counters are apart


def test_an_ipv6_host_counts_as_its_whole_64(db, clock):
    """A host on IPv6 is given a whole /64: changing its address within it starts no new
    count (SECURITY.md item 8)."""
    ratelimit.record_failure("2001:db8:1:2::1")
    ratelimit.record_failure("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert ratelimit.is_blocked("2001:db8:1:2::abcd")
    assert not ratelimit.is_blocked("2001:db8:1:3::1")


def test_an_ipv4_network_shares_a_counter_as_well(db, clock):
    """Addresses of one /24 count together too, with room for a few people behind it (a
    hospital's floor, a mobile carrier's block): four times an address's limit."""
    for host in range(1, 9):  # one failure each: no address reaches its own limit of 2
        ratelimit.record_failure(f"203.0.113.{host}")
    assert ratelimit.is_blocked("203.0.113.200")
    assert not ratelimit.is_blocked("203.0.114.1")
