"""Patient sessions: new ID at login, 1 h idle limit, 24 h absolute limit, re-authentication
before sensitive actions."""

import time
from datetime import timedelta

from django.conf import settings
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import timezone

from accounts.middleware import LOGIN_TIME_SESSION_KEY
from tests.conftest import login_with_totp, wait_for_fresh_totp_window


def test_session_id_changes_at_login(client, patient):
    client.get(reverse("account_login"))
    client.session.save()  # make sure an anonymous session exists before login
    before = client.cookies[settings.SESSION_COOKIE_NAME].value
    wait_for_fresh_totp_window()
    login_with_totp(client, patient)
    after = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert before != after
    assert not Session.objects.filter(session_key=before).exists()


def test_idle_limit_is_one_hour_and_refreshed_by_each_request(patient_client):
    assert settings.SESSION_COOKIE_AGE <= 3600
    patient_client.get(reverse("vault:home"))
    session = Session.objects.get(session_key=patient_client.session.session_key)
    remaining = session.expire_date - timezone.now()
    assert timedelta(minutes=59) < remaining <= timedelta(hours=1)


def test_idle_session_past_its_expiry_is_signed_out(patient_client):
    key = patient_client.session.session_key
    Session.objects.filter(session_key=key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    response = patient_client.get(reverse("vault:home"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))


def test_session_older_than_24_hours_is_signed_out_even_if_active(patient_client):
    session = patient_client.session
    session[LOGIN_TIME_SESSION_KEY] = int(time.time()) - settings.SESSION_ABSOLUTE_SECONDS - 1
    session.save()
    response = patient_client.get(reverse("vault:home"))
    assert response.status_code == 302
    assert response.url == reverse(settings.LOGIN_URL)
    assert patient_client.get(reverse("vault:home")).status_code == 302


def test_turning_mfa_off_asks_for_recent_reauthentication(patient_client):
    response = patient_client.get(reverse("mfa_deactivate_totp"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_reauthenticate")) or response.url.startswith(
        reverse("mfa_reauthenticate")
    )


def test_a_session_still_inside_its_idle_limit_keeps_working(patient_client):
    key = patient_client.session.session_key
    Session.objects.filter(session_key=key).update(
        expire_date=timezone.now() + timedelta(seconds=30)
    )
    assert patient_client.get(reverse("vault:home")).status_code == 200


def test_an_unknown_or_malformed_session_cookie_is_nobody(patient_client):
    for forged in ("x" * 32, "not a session key!"):
        patient_client.cookies[settings.SESSION_COOKIE_NAME] = forged
        response = patient_client.get(reverse("vault:home"))
        assert response.status_code == 302
        assert response.url.startswith(reverse("account_login"))


def test_a_deactivated_patient_is_signed_out_at_the_next_request(patient_client, patient):
    assert patient_client.get(reverse("vault:home")).status_code == 200
    patient.is_active = False
    patient.save(update_fields=["is_active"])
    response = patient_client.get(reverse("vault:home"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))
