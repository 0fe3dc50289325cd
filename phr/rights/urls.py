from django.urls import path

from phr.rights import views

app_name = "rights"
urlpatterns = [
    path("", views.my_data, name="my_data"),
    path("export/", views.export_everything, name="export"),
    path("delete/", views.delete_account, name="delete"),
    path("deleted/", views.deleted, name="deleted"),
]
