from django.urls import path

from phr.hospital import views_dicomweb, views_patient

app_name = "hospital"
urlpatterns = [
    # The patient's side.
    path("vault/deposits/", views_patient.deposit_codes, name="deposit_codes"),
    path(
        "vault/deposits/<uuid:code_id>/new/", views_patient.deposit_created, name="deposit_created"
    ),
    path(
        "vault/deposits/<uuid:code_id>/revoke/", views_patient.deposit_revoke, name="deposit_revoke"
    ),
    path("vault/inbox/", views_patient.inbox, name="inbox"),
    path("vault/inbox/<uuid:study_id>/accept/", views_patient.inbox_accept, name="accept"),
    path("vault/inbox/<uuid:study_id>/reject/", views_patient.inbox_reject, name="reject"),
    # DICOMweb STOW-RS for hospitals (PS3.18 10.5): the deposit code names the patient.
    path(
        "dicomweb/deposit/<str:deposit_code>/studies", views_dicomweb.store_instances, name="stow"
    ),
    path(
        "dicomweb/deposit/<str:deposit_code>/studies/<str:study_uid>",
        views_dicomweb.store_instances,
        name="stow_study",
    ),
]
