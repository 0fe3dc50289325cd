"""Behind a reverse proxy, each visitor keeps their own address (and so their own limits)."""

import pytest
from django.core.cache import cache
from django.test import Client

from phr.core.middleware import forwarded_client
from phr.sharing.models import AccessEvent
from tests.sharing.conftest import make_share, open_with_code, stored

PROXY = "127.0.0.1"  # what gunicorn sees: nginx on the same machine


@pytest.fixture(autouse=True)
def _fresh_rate_limits(db):
    # The failure counters live in the database cache, which tests don't empty.
    cache.clear()
    yield
    cache.clear()


@pytest.mark.parametrize(
    ("header", "proxies", "expected"),
    [
        ("203.0.113.5", 1, "203.0.113.5"),
        # The client may send its own X-Forwarded-For; our proxy appends what it saw, last.
        ("10.0.0.1, 203.0.113.5", 1, "203.0.113.5"),
        ("198.51.100.9, 203.0.113.5, 10.1.1.1", 2, "203.0.113.5"),
        ("2001:db8::1", 1, "2001:db8::1"),
        ("", 1, None),  # no header: the proxy's own address stays
        ("203.0.113.5", 2, None),  # fewer entries than proxies: a request that bypassed one
        ("not-an-address", 1, None),
        ("203.0.113.5", 0, None),
    ],
)
def test_the_address_our_nearest_proxy_saw_is_used(header, proxies, expected):
    assert forwarded_client(header, proxies) == expected


def test_behind_a_proxy_one_visitors_failures_do_not_block_another(patient, settings):
    settings.PHR_BEHIND_PROXY = True
    settings.PHR_SHARE_FAILURES_PER_IP_PER_MINUTE = 2
    _share, plain = make_share(patient, [stored(patient, "CT_small.dcm")])
    guesser = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.66")
    doctor = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.7")
    for _ in range(2):
        assert open_with_code(guesser, "0000-0000-0000-0000").status_code == 403
    assert open_with_code(guesser, plain.code).status_code == 429
    assert open_with_code(doctor, plain.code).status_code == 302
    # The patient's access log names the doctor's address, not the proxy's.
    assert AccessEvent.objects.filter(ip="203.0.113.7").exists()
    assert not AccessEvent.objects.filter(ip=PROXY).exists()


def test_without_the_setting_a_forwarded_header_is_ignored(patient, settings):
    settings.PHR_SHARE_FAILURES_PER_IP_PER_MINUTE = 2
    _share, plain = make_share(patient, [stored(patient, "CT_small.dcm")])
    # Not behind a proxy: a client can't pick a new address per guess with a header.
    for n in range(2):
        spoofer = Client(REMOTE_ADDR="198.51.100.66", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
        assert open_with_code(spoofer, "0000-0000-0000-0000").status_code == 403
    spoofer = Client(REMOTE_ADDR="198.51.100.66", HTTP_X_FORWARDED_FOR="192.0.2.200")
    assert open_with_code(spoofer, plain.code).status_code == 429
