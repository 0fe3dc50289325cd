"""SECURITY 12: link tokens never reach a log line."""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from phr.sharing.models import Share
from phr.sharing.redact import RedactShareTokens
from tests.sharing.conftest import make_share, open_with_code, open_with_link

pytestmark = pytest.mark.django_db


def all_logged(caplog) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


def test_a_404_under_a_link_is_logged_without_its_token(patient, ct, doctor, caplog):
    _share, plain = make_share(patient, [ct])
    with caplog.at_level(logging.INFO):
        assert doctor.get(f"/s/{plain.token}/oops").status_code == 404
    assert "Not Found: /s/[redacted]" in all_logged(caplog)
    assert plain.token not in all_logged(caplog)


def test_an_expired_link_is_logged_without_its_token_code_or_pin(patient, ct, doctor, caplog):
    share, plain = make_share(patient, [ct], pin="739154")
    Share.objects.filter(pk=share.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    with caplog.at_level(logging.DEBUG):
        assert open_with_link(doctor, plain.token, "739154").status_code == 403
        assert open_with_code(doctor, plain.code, "739154").status_code == 403
    logged = all_logged(caplog)
    assert "share redemption failed: via=link reason=expired" in logged
    assert "Forbidden: /s/[redacted]" in logged
    for secret in (plain.token, plain.code, plain.formatted_code, "739154"):
        assert secret not in logged


def test_the_filter_redacts_every_shape_of_record():
    token = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v"
    shapes = [
        logging.LogRecord(
            "django.server", 20, "", 0, '"%s" %s %s', (f"GET /s/{token} HTTP/1.1", "200", "5"), None
        ),
        logging.LogRecord(
            "gunicorn.access", 20, "", 0, "%(r)s", ({"r": f"POST /s/{token} HTTP/1.1"},), None
        ),
        logging.LogRecord("anything", 30, "", 0, f"Bad Request: /s/{token}", None, None),
    ]
    for record in shapes:
        assert RedactShareTokens().filter(record)
        assert token not in record.getMessage() and "/s/[redacted]" in record.getMessage()


def test_the_console_handler_and_the_path_loggers_carry_the_filter():
    for name in ("django.request", "django.server", "gunicorn.access"):
        assert any(isinstance(f, RedactShareTokens) for f in logging.getLogger(name).filters)
    handlers = logging.getLogger().handlers
    assert any(isinstance(f, RedactShareTokens) for handler in handlers for f in handler.filters)


@pytest.mark.parametrize(
    "path, secret",
    [
        (
            "/accounts/password/reset/key/1a-c3k9-0f4e2b7d9a1c3e5f7a9b/",
            "1a-c3k9-0f4e2b7d9a1c3e5f7a9b",
        ),
        ("/accounts/confirm-email/MjQ:1tHw3x:Zk9aWc2qXh5Kj8/", "MjQ:1tHw3x:Zk9aWc2qXh5Kj8"),
    ],
)
def test_password_reset_and_email_confirmation_keys_are_redacted(path, secret):
    record = logging.LogRecord("django.request", 30, "", 0, "Not Found: %s", (path,), None)
    assert RedactShareTokens().filter(record)
    assert secret not in record.getMessage() and "[redacted]" in record.getMessage()
