"""Keep magic-link tokens, deposit codes and account keys out of every log line.

A token in a log is a working key to someone's scans for whoever reads the logs, so every
record that mentions a path like /s/<token> (or a hospital's /dicomweb/deposit/<code>/, or a
password-reset or email-confirmation key) has it replaced before any handler formats it.
"""

import logging
import re

TOKEN_IN_PATH = re.compile(r"/s/[A-Za-z0-9_\-%]{8,}")
REDACTED = "/s/[redacted]"
DEPOSIT_CODE_IN_PATH = re.compile(r"/deposit/[^/\s?]+")
DEPOSIT_REDACTED = "/deposit/[redacted]"
# allauth's one-time keys: whoever reads them could set the password or confirm the address.
ACCOUNT_KEY_IN_PATH = re.compile(r"/(password/reset/key|confirm-email)/[^/\s?]+")

# Loggers that write request paths. A filter on a logger runs before any handler sees the
# record (including pytest's caplog and gunicorn's own access handler); a filter on a handler
# only covers that handler, so the console handler gets one too (see settings.LOGGING).
PATH_LOGGERS = (
    "django.request",
    "django.server",
    "django.security",
    "django.security.csrf",
    "django.security.DisallowedHost",
    "gunicorn.access",
    "gunicorn.error",
)


class RedactShareTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's problem, not ours
            return True
        redacted = message
        if "/s/" in redacted:
            redacted = TOKEN_IN_PATH.sub(REDACTED, redacted)
        if "/deposit/" in redacted:
            redacted = DEPOSIT_CODE_IN_PATH.sub(DEPOSIT_REDACTED, redacted)
        if "/password/reset/key/" in redacted or "/confirm-email/" in redacted:
            redacted = ACCOUNT_KEY_IN_PATH.sub(r"/\1/[redacted]", redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_FILTER = RedactShareTokens()


def install() -> None:
    """Attach the filter to the loggers that carry paths. Done in code rather than in
    settings.LOGGING because configuring gunicorn's loggers there would remove the handlers
    gunicorn set up itself."""
    for name in PATH_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
