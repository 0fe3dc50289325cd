"""A newcomer signs up, enrols an authenticator in real Chromium, logs out and back in."""

import time

import pyotp
import pytest

from tests.conftest import wait_for_fresh_totp_window

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long and unusual passphrase"


def test_signup_enrol_logout_and_login_again_with_a_fresh_code(page):
    page.goto("/")
    page.get_by_role("link", name="Sign up").first.click()
    page.get_by_label("Your full name").fill("Sam Browser")
    page.get_by_label("Email").fill("sam@example.com")
    page.locator("#id_password1").fill(PASSWORD)
    page.locator("#id_password2").fill(PASSWORD)
    page.get_by_role("button", name="Sign Up").click()

    # Straight to enrolment: read the secret shown for manual entry, as a phone app would.
    page.wait_for_url("**/2fa/totp/activate/")
    assert page.locator("img[src^='data:image/svg+xml']").is_visible()
    secret = page.locator("#authenticator_secret").input_value()
    totp = pyotp.TOTP(secret)
    wait_for_fresh_totp_window()
    enrolment_code = totp.now()
    page.locator("input[name=code]").fill(enrolment_code)
    page.get_by_role("button", name="Activate").click()

    page.wait_for_url("**/2fa/recovery-codes/")
    assert page.locator("#recovery_codes").input_value().count("\n") >= 9

    page.goto("/vault/")
    assert page.get_by_role("heading", name="My scans").is_visible()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/")

    page.goto("/accounts/login/")
    page.get_by_label("Email").fill("sam@example.com")
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/2fa/authenticate/")
    wait_for_fresh_totp_window()
    if totp.now() == enrolment_code:
        # That code was spent on enrolment (a code works once): the person waits for the next.
        time.sleep(30 - time.time() % 30 + 0.5)
    page.locator("input[name=code]").fill(totp.now())
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/vault/")
    assert page.get_by_text("Welcome, Sam").is_visible()
