from django.apps import AppConfig


class DemoConfig(AppConfig):
    """`manage.py demo`: a demo patient with real studies, for `make run` and the benches."""

    name = "phr.demo"
    label = "demo"
    verbose_name = "Demo"
