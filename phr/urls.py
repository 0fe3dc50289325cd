from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from accounts.views import admin_login_via_allauth
from phr.sharing.views_doctor import access_code

# The admin signs in through the same allauth login as everyone else, so TOTP applies to it.
admin.site.login = admin_login_via_allauth

urlpatterns = [
    path("", include("phr.core.urls")),
    # The short address printed on the patient's access card, where a doctor types the code.
    path("access", access_code, name="doctor_access"),
    path("", include("phr.sharing.urls")),
    path("", include("phr.hospital.urls")),
    path("", include("phr.dicomweb.urls")),
    path("vault/", include("phr.vault.urls")),
    path("my-data/", include("phr.rights.urls")),
    path("viewer/", include("viewer.urls")),
    path("accounts/", include("accounts.urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("favicon.ico", RedirectView.as_view(url="/static/img/favicon.svg", permanent=True)),
]
