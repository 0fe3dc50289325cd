"""Logging in needs the password and a fresh TOTP code; codes and recovery codes work once."""

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from django.urls import reverse

from tests.conftest import login_with_totp, totp_code, wait_for_fresh_totp_window
from tests.factories import PASSWORD


def test_password_alone_does_not_reach_the_vault(client, patient):
    response = client.post(reverse("account_login"), {"login": patient.email, "password": PASSWORD})
    assert response.status_code == 302
    assert response.url == reverse("mfa_authenticate")
    response = client.get(reverse("vault:home"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))


def test_valid_totp_reaches_the_vault(client, patient):
    wait_for_fresh_totp_window()
    response = login_with_totp(client, patient)
    assert response.status_code == 302
    assert response.url == reverse("vault:home")
    assert client.get(reverse("vault:home")).status_code == 200


def test_wrong_totp_is_refused(client, patient):
    response = login_with_totp(
        client, patient, code="123456" if totp_code(patient.totp_secret) != "123456" else "654321"
    )
    assert response.status_code == 200
    assert "Incorrect code" in response.content.decode()
    assert client.get(reverse("vault:home")).status_code == 302


def test_the_same_totp_code_is_refused_the_second_time(client, patient):
    wait_for_fresh_totp_window(min_seconds_left=10)
    code = totp_code(patient.totp_secret)
    assert login_with_totp(client, patient, code).status_code == 302
    client.post(reverse("account_logout"))

    response = login_with_totp(client, patient, code)
    assert response.status_code == 200, "a replayed code must not log in"
    assert "Incorrect code" in response.content.decode()
    assert client.get(reverse("vault:home")).status_code == 302


def test_a_recovery_code_works_once(client, patient):
    recovery = RecoveryCodes.activate(patient)
    code = recovery.get_unused_codes()[0]

    assert login_with_totp(client, patient, code).url == reverse("vault:home")
    client.post(reverse("account_logout"))

    response = login_with_totp(client, patient, code)
    assert response.status_code == 200
    assert client.get(reverse("vault:home")).status_code == 302
    unused = RecoveryCodes(
        Authenticator.objects.get(user=patient, type=Authenticator.Type.RECOVERY_CODES)
    ).get_unused_codes()
    assert code not in unused


@pytest.mark.parametrize("wrong", ["not the password", ""])
def test_wrong_password_is_refused(client, patient, wrong):
    response = client.post(reverse("account_login"), {"login": patient.email, "password": wrong})
    assert response.status_code == 200
    assert client.get(reverse("vault:home")).status_code == 302
