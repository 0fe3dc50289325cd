"""An email backend whose server refuses every message: the one stand-in the suite uses for an
outside SMTP server (which can't run here), to test what a failed email does to a request."""

import smtplib

from django.core.mail.backends.base import BaseEmailBackend

attempts: list[str] = []


class RefusingBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        for message in email_messages:
            attempts.append(message.subject)
        raise smtplib.SMTPServerDisconnected("the mail server went away")
