from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from phr.core.health import run_checks


@require_GET
def landing(request):
    if request.user.is_authenticated:
        return redirect("vault:home")
    return render(request, "core/landing.html")


@never_cache
@require_GET
def healthz(request):
    results = run_checks()
    healthy = all(value == "ok" for value in results.values())
    return JsonResponse(results, status=200 if healthy else 503)
