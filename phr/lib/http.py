"""Small HTTP helpers every app uses: pages that hold a secret, private caching, and the
Content-Disposition of a file with any name."""

import unicodedata
from functools import wraps
from urllib.parse import quote

from django.urls import NoReverseMatch, reverse
from django.utils.cache import add_never_cache_headers, patch_cache_control


def secret_page(view):
    """For pages whose URL or content opens someone's scans (the /s/ link, /access, the
    doctor's pages, the patient's new code): no browser or proxy keeps a copy, and no request
    the page makes, to this site or any other, carries its address (with the token) in Referer.

    `strict-origin`, not `no-referrer`: it sends only the site's origin, so the CSS, scripts and
    images the page loads don't put the token in our own server's logs either, while the page's
    form POSTs keep their Origin (under `no-referrer` Chromium sends `Origin: null`, which
    Django's CSRF check rightly refuses). No page sets a <meta name="referrer">, which would
    take precedence over this header; every other page has the site-wide `same-origin`."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        add_never_cache_headers(response)
        patch_cache_control(response, no_store=True, private=True)
        response["Referrer-Policy"] = "strict-origin"
        return response

    return wrapper


def private(response, max_age: int, etag: str | None = None):
    # Private: shared caches (a hospital proxy) must never keep a patient's images.
    patch_cache_control(response, private=True, max_age=max_age)
    if etag:
        response["ETag"] = etag
    return response


def content_disposition(filename: str, *, inline: bool) -> str:
    """`inline; filename="Bericht Muller.pdf"; filename*=UTF-8''Bericht%20M%C3%BCller.pdf`.

    Every browser reads filename*; the ASCII fallback is for old ones, with accents folded
    rather than dropped and nothing that could break out of the quoted string.
    """
    folded = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    fallback = "".join(ch for ch in folded if ch.isprintable() and ch not in '"\\;').strip()
    disposition = "inline" if inline else "attachment"
    return (
        f'{disposition}; filename="{fallback or "document"}"; '
        f"filename*=UTF-8''{quote(filename, safe='')}"
    )


def url_if_installed(name: str, *args) -> str | None:
    """The URL of a page of a higher layer's app (the viewer, say), or None on a site that
    runs without that app: a lower layer links to it without depending on it."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None
