from django.urls import path

from phr.core import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("access", views.doctor_access, name="doctor_access"),
    path("healthz", views.healthz, name="healthz"),
]
