from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect


def admin_login_via_allauth(request, extra_context=None):
    """Replace the admin's password-only login with the site's login, which asks for TOTP."""
    next_url = request.GET.get("next") or "/admin/"
    if request.user.is_authenticated:
        # Signed in but not staff: the admin is not for them.
        return redirect("vault:home")
    return redirect_to_login(next_url)
