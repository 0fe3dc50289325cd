import re

import pytest
from django.urls import reverse

PUBLIC_PAGES = ["landing", "account_login", "account_signup", "doctor_access", "healthz"]


@pytest.mark.parametrize("name", PUBLIC_PAGES)
def test_security_headers_on_public_pages(client, db, name):
    response = client.get(reverse(name))
    csp = response["Content-Security-Policy"]
    for directive in (
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "default-src 'self'",
    ):
        assert directive in csp
    assert not re.search(r"https?://", csp), "no third-party origin may be allowed"
    assert response["X-Content-Type-Options"] == "nosniff"
    # Pages where a doctor types an access code send their origin at most, never their path
    # (SECURITY.md item 12; phr.lib.http says why not no-referrer).
    expected_referrer = "strict-origin" if name == "doctor_access" else "same-origin"
    assert response["Referrer-Policy"] == expected_referrer
    assert response["X-Frame-Options"] == "DENY"


def test_security_headers_on_a_signed_in_page(patient_client):
    response = patient_client.get(reverse("vault:home"))
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Content-Type-Options"] == "nosniff"


def test_hsts_is_sent_over_https(client, db):
    response = client.get(reverse("landing"), secure=True)
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
    plain = client.get(reverse("landing"))
    assert "Strict-Transport-Security" not in plain


@pytest.mark.parametrize("name", ["landing", "account_login", "account_signup", "doctor_access"])
def test_pages_load_nothing_from_other_origins(client, db, name):
    html = client.get(reverse(name)).content.decode()
    external = re.findall(r'(?:src|href|action)\s*=\s*["\'](?:https?:)?//[^"\']+', html)
    assert external == []


def test_landing_page_explains_and_offers_the_three_ways_in(client, db):
    html = client.get(reverse("landing")).content.decode()
    assert "Your scans, in your pocket, shared on your terms." in html
    assert reverse("account_signup") in html
    assert reverse("account_login") in html
    assert reverse("doctor_access") in html
    assert 'name="viewport"' in html
