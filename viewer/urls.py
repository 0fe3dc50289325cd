from django.urls import path

from viewer import views

app_name = "viewer"
urlpatterns = [
    path("study/<uuid:study_id>/", views.study, name="study"),
    path("study/<uuid:study_id>/images.json", views.study_images, name="study_images"),
    path("study/<uuid:study_id>/files/", views.study_files, name="study_files"),
    path("instances/<uuid:instance_id>/", views.instance, name="instance"),
    path("instances/<uuid:instance_id>/tags.json", views.instance_tags, name="instance_tags"),
]
