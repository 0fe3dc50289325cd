from django.apps import AppConfig


class HospitalConfig(AppConfig):
    name = "phr.hospital"
    label = "hospital"
    verbose_name = "Hospital push"
