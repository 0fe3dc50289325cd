from io import StringIO

import pyotp
from django.core.management import call_command
from django.urls import reverse

from phr.demo.seeding import DEMO_EMAIL, DEMO_PASSWORD
from tests.conftest import wait_for_fresh_totp_window


def run_demo() -> str:
    out = StringIO()
    call_command("demo", stdout=out)
    return out.getvalue()


def value_after(label: str, text: str) -> str:
    line = next(line for line in text.splitlines() if line.strip().startswith(label))
    return line.split(label, 1)[1].strip()


def test_demo_is_idempotent_and_its_printed_credentials_log_in(client, db):
    first = run_demo()
    second = run_demo()
    secret = value_after("TOTP key:", first)
    assert secret == value_after("TOTP key:", second)
    assert value_after("TOTP URI:", first).startswith("otpauth://totp/")
    assert "█" in first  # the terminal QR code
    assert value_after("Email:", first) == DEMO_EMAIL

    wait_for_fresh_totp_window()
    response = client.post(
        reverse("account_login"), {"login": DEMO_EMAIL, "password": DEMO_PASSWORD}
    )
    assert response.url == reverse("mfa_authenticate")
    response = client.post(reverse("mfa_authenticate"), {"code": pyotp.TOTP(secret).now()})
    assert response.url == reverse("vault:home")
    assert client.get(reverse("vault:home")).status_code == 200
