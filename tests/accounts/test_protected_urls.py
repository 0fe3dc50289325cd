"""Every protected page sends an anonymous visitor to login and an un-enrolled patient to
authenticator enrolment."""

import pytest
from django.urls import reverse

PROTECTED = ["vault:home", "mfa_index", "account_email", "account_change_password"]


@pytest.mark.parametrize("name", PROTECTED)
def test_anonymous_visitor_is_sent_to_login(client, db, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))


@pytest.mark.parametrize("name", [*PROTECTED, "landing", "doctor_access"])
def test_unenrolled_patient_is_sent_to_enrolment(client, unenrolled_patient, name):
    client.force_login(unenrolled_patient)
    response = client.get(reverse(name), follow=False)
    assert response.status_code == 302
    target = response.url
    if target == reverse("vault:home"):  # the landing page sends patients to their vault first
        target = client.get(target).url
    assert target == reverse("mfa_activate_totp")


def test_unenrolled_patient_can_still_reach_enrolment_and_log_out(client, unenrolled_patient):
    client.force_login(unenrolled_patient)
    response = client.get(reverse("mfa_activate_totp"))
    # Enrolment itself may first ask for the password again (recent re-authentication).
    assert response.status_code in (200, 302)
    if response.status_code == 302:
        assert response.url.startswith(reverse("account_reauthenticate"))
        assert client.get(response.url).status_code == 200
    response = client.post(reverse("account_logout"))
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_enrolled_patient_reaches_protected_pages(patient_client):
    for name in PROTECTED:
        assert patient_client.get(reverse(name)).status_code == 200, name


def test_admin_login_goes_through_the_totp_login(client, db):
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))


def test_admin_refuses_a_patient_who_is_not_staff(patient_client):
    response = patient_client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response.url
