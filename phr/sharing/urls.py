from django.urls import path

from phr.sharing import views_doctor, views_patient

app_name = "sharing"
urlpatterns = [
    # The patient's shares.
    path("shares/", views_patient.share_list, name="list"),
    path("shares/new/", views_patient.share_create, name="create"),
    path("shares/<uuid:share_id>/", views_patient.share_detail, name="detail"),
    path("shares/<uuid:share_id>/new/", views_patient.share_created, name="created"),
    path("shares/<uuid:share_id>/card/", views_patient.share_card, name="card"),
    path("shares/<uuid:share_id>/hide/", views_patient.share_hide, name="hide"),
    path("shares/<uuid:share_id>/revoke/", views_patient.share_revoke, name="revoke"),
    # The doctor's side. /access (the code form) is named "doctor_access" in phr/urls.py.
    path("s/<str:token>", views_doctor.magic_link, name="link"),
    path("shared/", views_doctor.shared_home, name="shared_home"),
    path("shared/leave/", views_doctor.leave, name="leave"),
    path(
        "shared/<uuid:share_id>/dicomweb-token/",
        views_doctor.dicomweb_token,
        name="dicomweb_token",
    ),
    path("shared/studies/<uuid:study_id>/", views_doctor.shared_study, name="shared_study"),
]
