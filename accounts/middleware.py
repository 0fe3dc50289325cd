import time

from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.shortcuts import redirect

LOGIN_TIME_SESSION_KEY = "phr_login_time"
REFRESHED_AT_SESSION_KEY = "phr_refreshed_at"
TOTP_ENROLLED_SESSION_KEY = "phr_totp_enrolled"

# Pages a signed-in patient without an authenticator may still reach: enrolment itself, the
# re-authentication it may ask for, logging out, and confirming an email address.
TOTP_EXEMPT_URL_NAMES = {
    "mfa_activate_totp",
    "account_reauthenticate",
    "mfa_reauthenticate",
    "account_logout",
    "account_confirm_email",
    "account_email_verification_sent",
    "healthz",
}


class AbsoluteSessionLifetimeMiddleware:
    """End a signed-in session 24 hours after login, however active it has been.

    The idle limit is Django's own (SESSION_COOKIE_AGE with SESSION_SAVE_EVERY_REQUEST).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            logged_in_at = request.session.get(LOGIN_TIME_SESSION_KEY)
            too_old = logged_in_at is None or (
                time.time() - logged_in_at > settings.SESSION_ABSOLUTE_SECONDS
            )
            if too_old:
                logout(request)
                messages.info(request, "For your safety you were signed out. Please sign in again.")
                return redirect(settings.LOGIN_URL)
        return self.get_response(request)


class SlidingSessionMiddleware:
    """Push the idle expiry forward on activity, writing the session at most once a minute.

    Django's SESSION_SAVE_EVERY_REQUEST would do the same with a database write per request,
    which serialises a patient's parallel uploads behind session writes.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        session = getattr(request, "session", None)
        if session is not None and not session.is_empty():
            now = int(time.time())
            if now - session.get(REFRESHED_AT_SESSION_KEY, 0) >= settings.SESSION_REFRESH_SECONDS:
                session[REFRESHED_AT_SESSION_KEY] = now  # marks it modified, so it is saved
        return response


def has_totp(request) -> bool:
    """Whether the signed-in user has an authenticator app, remembered in the session.

    Only a positive answer is remembered; accounts.signals forgets it when an authenticator is
    removed.
    """
    if request.session.get(TOTP_ENROLLED_SESSION_KEY) == request.user.pk:
        return True
    enrolled = Authenticator.objects.filter(
        user=request.user, type=Authenticator.Type.TOTP
    ).exists()
    if enrolled:
        request.session[TOTP_ENROLLED_SESSION_KEY] = request.user.pk
    return enrolled


class RequireTOTPMiddleware:
    """Send a signed-in patient who has not set up an authenticator app to do that first.

    allauth makes MFA available but never mandatory; health records need it mandatory. The
    check runs once the URL is resolved (process_view), so it reads the page's name from the
    resolver's answer instead of resolving the path a second time.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        user = request.user
        if user.is_authenticated and not self._is_exempt(request) and not has_totp(request):
            return redirect("mfa_activate_totp")
        return None

    @staticmethod
    def _is_exempt(request) -> bool:
        if request.path_info.startswith(settings.STATIC_URL):
            return True
        return request.resolver_match.url_name in TOTP_EXEMPT_URL_NAMES
