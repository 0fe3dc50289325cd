from django.urls import path

from phr.dicomweb import views

app_name = "dicomweb"
STUDY = "dicomweb/studies/<str:study_uid>"
SERIES = f"{STUDY}/series/<str:series_uid>"
urlpatterns = [
    path("dicomweb/studies", views.search_studies, name="studies"),
    path(STUDY, views.retrieve, name="study"),
    path(f"{STUDY}/series", views.search_series, name="series"),
    path(f"{STUDY}/instances", views.search_instances, name="study_instances"),
    path(SERIES, views.retrieve, name="one_series"),
    path(f"{SERIES}/instances", views.search_instances, name="instances"),
    path(f"{SERIES}/instances/<str:instance_uid>", views.retrieve, name="instance"),
    path(f"{STUDY}/metadata", views.metadata, name="study_metadata"),
    path(f"{SERIES}/metadata", views.metadata, name="series_metadata"),
    path(f"{SERIES}/instances/<str:instance_uid>/metadata", views.metadata, name="metadata"),
    path(
        f"{SERIES}/instances/<str:instance_uid>/frames/<str:frame_list>",
        views.retrieve_frames,
        name="frames",
    ),
    path(f"{SERIES}/instances/<str:instance_uid>/rendered", views.rendered, name="rendered"),
]
