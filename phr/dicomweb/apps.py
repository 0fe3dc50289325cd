from django.apps import AppConfig


class DicomwebConfig(AppConfig):
    name = "phr.dicomweb"
    label = "dicomweb"
    verbose_name = "DICOMweb"
