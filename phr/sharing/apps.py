from django.apps import AppConfig


class SharingConfig(AppConfig):
    name = "phr.sharing"
    label = "sharing"
    verbose_name = "Sharing"

    def ready(self):
        from phr.sharing.redact import install

        install()
