"""The two emails sharing sends. Plain text, written for people in a hurry.

The recipient gets the link but never the PIN: the PIN is the second thing the patient hands
over in person or by phone, so a forwarded or intercepted email alone opens nothing.
"""

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse


def send_link_to_recipient(share, link: str) -> None:
    context = {"share": share, "link": link, "site_name": settings.SITE_NAME}
    send_mail(
        subject=render_to_string("sharing/email/link_subject.txt", context).strip(),
        message=render_to_string("sharing/email/link_body.txt", context),
        from_email=None,
        recipient_list=[share.recipient_email],
    )


def send_first_open_notice(share, *, when, client, site_url: str = "") -> None:
    context = {
        "share": share,
        "when": when,
        "client": client,
        "site_name": settings.SITE_NAME,
        "shares_url": site_url + reverse("sharing:detail", args=[share.pk]),
    }
    send_mail(
        subject=render_to_string("sharing/email/opened_subject.txt", context).strip(),
        message=render_to_string("sharing/email/opened_body.txt", context),
        from_email=None,
        recipient_list=[share.owner.email],
    )
