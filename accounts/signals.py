import time

from allauth.mfa.signals import authenticator_removed
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from accounts.middleware import LOGIN_TIME_SESSION_KEY, TOTP_ENROLLED_SESSION_KEY


@receiver(user_logged_in)
def remember_login_time(sender, request, user, **kwargs):
    # Django has already given the session a new ID (cycle_key) at this point.
    if request is not None and hasattr(request, "session"):
        request.session[LOGIN_TIME_SESSION_KEY] = int(time.time())


@receiver(authenticator_removed)
def forget_totp_enrolment(sender, request, user, authenticator, **kwargs):
    # Turning the authenticator off must send the patient back to enrolment at once.
    if request is not None and hasattr(request, "session"):
        request.session.pop(TOTP_ENROLLED_SESSION_KEY, None)
