from django.urls import path

from phr.rights import views

app_name = "rights"
urlpatterns = [
    path("", views.my_data, name="my_data"),
    path("export/", views.export_everything, name="export"),
    path("dicomweb-tokens/new/", views.dicomweb_token_new, name="dicomweb_token_new"),
    path(
        "dicomweb-tokens/<uuid:token_id>/revoke/",
        views.dicomweb_token_revoke,
        name="dicomweb_token_revoke",
    ),
    path("delete/", views.delete_account, name="delete"),
    path("deleted/", views.deleted, name="deleted"),
]
