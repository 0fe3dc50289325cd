"""django-axes locks an account/address pair after repeated wrong passwords, on the one login
page that the admin shares with patients."""

from axes.models import AccessAttempt
from django.urls import reverse

from tests.factories import PASSWORD


def test_repeated_wrong_passwords_lock_the_login(client, patient, settings):
    # Take allauth's own (shorter) limit out of the way to see axes' lockout on its own.
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "login_failed": False}
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("account_login"), {"login": patient.email, "password": "wrong"})
    attempt = AccessAttempt.objects.get()
    assert attempt.username == patient.email
    assert attempt.failures_since_start == settings.AXES_FAILURE_LIMIT

    response = client.post(reverse("account_login"), {"login": patient.email, "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_allauth_rate_limits_failed_logins_per_account(client, patient):
    for _ in range(5):
        client.post(reverse("account_login"), {"login": patient.email, "password": "wrong"})
    response = client.post(reverse("account_login"), {"login": patient.email, "password": "wrong"})
    assert response.status_code in (200, 429)
    assert "Too many failed login attempts" in response.content.decode()
