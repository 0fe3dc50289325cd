"""Signup leads straight into mandatory TOTP enrolment, then recovery codes, then the vault."""

import re

import pyotp
from allauth.mfa.models import Authenticator
from django.urls import reverse

from accounts.models import User
from tests.conftest import wait_for_fresh_totp_window


def signup(client, email="new.patient@example.com"):
    return client.post(
        reverse("account_signup"),
        {
            "full_name": "Jane Patient",
            "email": email,
            "date_of_birth": "1961-04-02",
            "password1": "a long and unusual passphrase",
            "password2": "a long and unusual passphrase",
        },
    )


def secret_shown_on(page_html: str) -> str:
    match = re.search(r'id="authenticator_secret"[^>]*value="([A-Z2-7]+)"', page_html)
    if not match:
        match = re.search(r'value="([A-Z2-7]{32})"[^>]*id="authenticator_secret"', page_html)
    assert match, "the enrolment page must show the secret for manual entry"
    return match.group(1)


def test_signup_forces_totp_enrolment_then_recovery_codes_then_vault(client, db):
    response = signup(client)
    assert response.status_code == 302

    user = User.objects.get(email="new.patient@example.com")
    assert user.full_name == "Jane Patient"
    assert str(user.date_of_birth) == "1961-04-02"

    # Wherever the new patient goes, they are sent to enrol an authenticator first.
    response = client.get(reverse("vault:home"))
    assert response.status_code == 302
    assert response.url == reverse("mfa_activate_totp")

    enrolment = client.get(reverse("mfa_activate_totp"))
    assert enrolment.status_code == 200
    html = enrolment.content.decode()
    assert "data:image/svg+xml;base64," in html  # the QR code
    secret = secret_shown_on(html)

    response = client.post(reverse("mfa_activate_totp"), {"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 302
    assert response.url == reverse("mfa_view_recovery_codes")
    codes_page = client.get(response.url)
    assert codes_page.status_code == 200
    assert len(re.findall(r"\b\d{8}\b", codes_page.content.decode())) >= 10

    assert client.get(reverse("vault:home")).status_code == 200
    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


def test_wrong_code_at_enrolment_is_refused_kindly(client, db):
    signup(client)
    client.get(reverse("mfa_activate_totp"))
    response = client.post(reverse("mfa_activate_totp"), {"code": "000000"})
    assert response.status_code == 200
    assert "Incorrect code" in response.content.decode()
    assert not Authenticator.objects.filter(type=Authenticator.Type.TOTP).exists()


def test_totp_secret_is_stored_encrypted(patient):
    stored = Authenticator.objects.get(user=patient, type=Authenticator.Type.TOTP).data["secret"]
    assert patient.totp_secret not in stored
    assert stored != patient.totp_secret
    from phr.lib.crypto import decrypt_text

    assert decrypt_text(stored) == patient.totp_secret


def test_passkeys_are_offered_once_totp_works(patient_client):
    # SECURITY.md item 2: WebAuthn comes on top of TOTP, from the two-factor page.
    html = patient_client.get(reverse("mfa_index")).content.decode()
    assert reverse("mfa_add_webauthn") in html


def test_the_code_that_activated_the_authenticator_cannot_log_in_again(client, db):
    """A code works once: the one typed to set the authenticator up is spent too, or someone
    who saw it over the patient's shoulder could log in with it in the same 30 seconds."""
    signup(client)
    secret = secret_shown_on(client.get(reverse("mfa_activate_totp")).content.decode())
    wait_for_fresh_totp_window()
    code = pyotp.TOTP(secret).now()
    assert client.post(reverse("mfa_activate_totp"), {"code": code}).status_code == 302
    client.post(reverse("account_logout"))

    response = client.post(
        reverse("account_login"),
        {"login": "new.patient@example.com", "password": "a long and unusual passphrase"},
    )
    assert response.url == reverse("mfa_authenticate")
    replayed = client.post(reverse("mfa_authenticate"), {"code": code})
    assert replayed.status_code == 200  # the code form again, with its error
    assert "Incorrect code" in replayed.content.decode()
    assert client.get(reverse("vault:home")).status_code == 302  # not signed in
