from django.urls import path

from phr.vault import views

app_name = "vault"
urlpatterns = [
    path("", views.home, name="home"),
]
