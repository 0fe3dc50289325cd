"""Instances' headers as DICOM JSON (PS3.18 F.2), for DICOMweb's metadata answers.

Each instance's is read from its stored file once, without the pixel data, and kept in
InstanceMetadata; every later answer comes from the database, so asking for a 300-image
series' metadata opens no file. Values longer than BULK_BYTES (pixel data, overlays, embedded
documents) are left out: the element is listed with its VR and no value, as PS3.18 allows.
"""

import json
import logging
import warnings

from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from pydicom import dcmread

from phr.vault.models import Instance, InstanceMetadata

log = logging.getLogger(__name__)

BULK_BYTES = 4096


def dicom_json_of(instances: list[Instance]) -> dict[object, str]:
    """{instance pk: its DICOM JSON, as text} for `instances`, reading the files of those not
    yet kept."""
    kept = dict(
        InstanceMetadata.objects.filter(instance__in=instances).values_list(
            "instance_id", "dicom_json"
        )
    )
    for instance in instances:
        if instance.pk not in kept:
            kept[instance.pk] = _keep(instance)
    return kept


def _keep(instance: Instance) -> str:
    document = json.dumps(read(instance.storage_key), separators=(",", ":"))
    try:
        with transaction.atomic():
            InstanceMetadata.objects.create(instance=instance, dicom_json=document)
    except IntegrityError:
        pass  # another request kept it first: the same file, the same answer
    return document


def read(storage_key: str) -> dict:
    with default_storage.open(storage_key, "rb") as blob, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # real files' oddities; ingest already accepted it
        dataset = dcmread(blob, stop_before_pixels=True, defer_size=BULK_BYTES)
        document = dataset.to_json_dict(
            bulk_data_threshold=BULK_BYTES, bulk_data_element_handler=lambda element: ""
        )
    return _without_bulk_references(document)


def _without_bulk_references(document: dict) -> dict:
    for element in document.values():
        element.pop("BulkDataURI", None)
        if element.get("vr") == "SQ":
            for item in element.get("Value", []):
                _without_bulk_references(item)
    return document
