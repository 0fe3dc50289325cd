from django.urls import path

from phr.vault.views import browse, download, upload

app_name = "vault"
urlpatterns = [
    path("", browse.home, name="home"),
    path("studies/<uuid:study_id>/", browse.study_detail, name="study"),
    path("studies/<uuid:study_id>/delete/", browse.delete_study, name="delete_study"),
    path("series/<uuid:series_id>/thumbnail.png", browse.series_thumbnail, name="series_thumbnail"),
    path("documents/<uuid:document_id>/", browse.document_file, name="document"),
    path("add/", upload.upload_page, name="upload"),
    path("add/file", upload.upload_file, name="upload_file"),
    path("download/", download.download_studies, name="download"),
    path("studies/<uuid:study_id>/download/", download.download_study, name="download_study"),
]
