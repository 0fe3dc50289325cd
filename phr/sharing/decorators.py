from functools import wraps

from django.utils.cache import add_never_cache_headers, patch_cache_control


def secret_page(view):
    """For pages whose URL or content opens someone's scans (the /s/ link, /access, the
    doctor's pages, the patient's new code): no browser or proxy keeps a copy, and no link
    followed from the page tells the next site where it came from.

    The HTML itself keeps base.html's `<meta name="referrer" content="same-origin">`, which
    browsers apply over this header: under `no-referrer` Chromium sends `Origin: null` with
    the page's own form POSTs, and Django's CSRF check rightly refuses those. `same-origin`
    still never sends the address to any other site."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        add_never_cache_headers(response)
        patch_cache_control(response, no_store=True, private=True)
        response["Referrer-Policy"] = "no-referrer"
        return response

    return wrapper
