from django.apps import AppConfig


class RightsConfig(AppConfig):
    name = "phr.rights"
    label = "rights"
    verbose_name = "Patient data rights"
