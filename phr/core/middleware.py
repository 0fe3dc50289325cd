"""The client's address when the site runs behind a reverse proxy (nginx, a load balancer).

Behind a proxy every request reaches gunicorn from the proxy's own address. Left alone, the
per-address limits on access codes, PINs, deposit codes and logins would then count every
visitor as one (a stranger's wrong guesses would lock out every doctor), and the patient's
access log would show the proxy instead of who looked. So, with PHR_BEHIND_PROXY, the address
is taken from X-Forwarded-For: the entry the nearest trusted proxy appended, counted from the
right. Entries further left were written by the client and are never trusted.
"""

import ipaddress

from django.conf import settings


class ClientAddressMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if settings.PHR_BEHIND_PROXY:
            address = forwarded_client(
                request.META.get("HTTP_X_FORWARDED_FOR", ""), settings.PHR_PROXY_COUNT
            )
            if address:
                request.META["REMOTE_ADDR"] = address
        return self.get_response(request)


def forwarded_client(header: str, proxies: int) -> str | None:
    """The address the outermost of our `proxies` saw, from an X-Forwarded-For header; None if
    the header doesn't have that many entries or that entry is not an IP address."""
    entries = [entry.strip() for entry in header.split(",") if entry.strip()]
    if proxies < 1 or len(entries) < proxies:
        return None
    candidate = entries[-proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None
