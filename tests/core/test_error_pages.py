"""Error pages say what happened and what to do next, in our layout, with DEBUG off (issue 18)."""

import pytest
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def production(settings):
    settings.DEBUG = False


def test_a_missing_page_is_a_kind_404(production, client):
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    assert b"We couldn't find that page" in response.content
    assert b"site-header" in response.content  # our layout


def test_a_refused_page_is_a_kind_403(production, rf):
    from django.views.defaults import permission_denied

    response = permission_denied(rf.get("/"), PermissionDenied())
    assert response.status_code == 403
    assert b"This page isn't open to you" in response.content


def test_a_malformed_request_is_a_kind_400(production, rf):
    from django.views.defaults import bad_request

    response = bad_request(rf.get("/"), SuspiciousOperation())
    assert response.status_code == 400
    assert b"We couldn't understand that request" in response.content


def test_a_form_without_its_csrf_token_gets_a_page_that_says_try_again(production, patient):
    browser = Client(enforce_csrf_checks=True)
    response = browser.post("/accounts/login/", {"login": patient.email, "password": "x"})
    assert response.status_code == 403
    assert b"Please try that again" in response.content and b"Nothing was saved" in response.content


def test_a_server_error_page_needs_no_request_and_no_inline_style(production, rf):
    from django.views.defaults import server_error

    response = server_error(rf.get("/"))
    assert response.status_code == 500
    assert b"Nothing you saved was lost" in response.content
    assert b"style=" not in response.content  # the CSP allows no inline styles
