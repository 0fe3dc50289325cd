from django.conf import settings
from django.utils.functional import SimpleLazyObject


def site(request):
    context = {"site_name": settings.SITE_NAME}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        # Lazy: pages that never show the navigation (JSON, files) never pay for the count.
        context["inbox_count"] = SimpleLazyObject(lambda: _inbox_count(user))
    return context


def _inbox_count(user) -> int:
    from phr.vault.models import Study

    return Study.objects.in_inbox().filter(owner=user).count()
