"""The two emails sharing sends. Plain text, written for people in a hurry.

The recipient gets the link but never the PIN: the PIN is the second thing the patient hands
over in person or by phone, so a forwarded or intercepted email alone opens nothing.
"""

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

log = logging.getLogger(__name__)


def _send(kind: str, subject: str, body: str, to: str) -> bool:
    """Send one email, trying once more if the mail server fails; never raise: an email must
    not fail the request that caused it (the doctor's first open, a share's creation). A
    failure is logged, without the address or the text. Returns whether it went."""
    subject = " ".join(subject.split())  # one line: a header can't hold a line break
    for attempt in (1, 2):
        try:
            send_mail(subject=subject, message=body, from_email=None, recipient_list=[to])
            return True
        except Exception as error:
            # The kind of error only: an SMTP error's text can hold the address.
            log.error(
                "The %s email could not be sent (attempt %d of 2): %s",
                kind,
                attempt,
                type(error).__name__,
            )
    return False


def send_link_to_recipient(share, link: str) -> bool:
    context = {"share": share, "link": link, "site_name": settings.SITE_NAME}
    return _send(
        "share link",
        render_to_string("sharing/email/link_subject.txt", context),
        render_to_string("sharing/email/link_body.txt", context),
        share.recipient_email,
    )


def send_first_open_notice(share, *, when, client, site_url: str = "") -> None:
    context = {
        "share": share,
        "when": when,
        "client": client,
        "site_name": settings.SITE_NAME,
        "shares_url": site_url + reverse("sharing:detail", args=[share.pk]),
    }
    _send(
        "first open",
        render_to_string("sharing/email/opened_subject.txt", context),
        render_to_string("sharing/email/opened_body.txt", context),
        share.owner.email,
    )
