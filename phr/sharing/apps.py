from django.apps import AppConfig


class SharingConfig(AppConfig):
    name = "phr.sharing"
    label = "sharing"
    verbose_name = "Sharing"

    def ready(self):
        from phr.sharing.grantee import ShareGrantee
        from phr.sharing.redact import install
        from phr.vault import access

        install()
        # vault decides who sees what; for a doctor's browser it asks this app.
        access.register_grantee(ShareGrantee())
