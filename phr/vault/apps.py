from django.apps import AppConfig


class VaultConfig(AppConfig):
    name = "phr.vault"
    label = "vault"
    verbose_name = "Vault"
