from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "phr.core"
    label = "core"
    verbose_name = "Site"
