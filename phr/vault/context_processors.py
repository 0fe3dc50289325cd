from django.utils.functional import SimpleLazyObject

from phr.vault.models import Study


def inbox(request):
    """How many studies a hospital sent wait in the signed-in patient's Inbox (the menu shows
    it). Lazy: pages that never show the navigation (JSON, files) never pay for the count."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "inbox_count": SimpleLazyObject(lambda: Study.objects.in_inbox().filter(owner=user).count())
    }
