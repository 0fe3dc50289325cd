"""A study's end: deleting it with every blob, thumbnail and bundle that only it used. The
patient's delete button and a hospital's withdrawn delivery both end here."""

import logging
from dataclasses import dataclass
from datetime import date

from django.core.files.storage import default_storage
from django.db import transaction

from phr.vault import blobs, bundles, thumbnails
from phr.vault.models import Instance, Study

log = logging.getLogger(__name__)


@dataclass
class DeletedStudy:
    title: str
    study_date: date | None
    instances: int
    blobs_removed: int


def delete_study(study: Study) -> DeletedStudy:
    """Delete a study's rows, then every blob, cached thumbnail and series bundle no row refers
    to any more.

    Rows go first, in one transaction: if that fails nothing is lost. Blobs go after the
    commit, each only once no row points at it, so bytes shared with another of the owner's
    studies survive. A blob we fail to remove is logged; the vault checker finds it as an
    orphan. Call this outside any enclosing transaction, so that blobs are removed only once
    the rows are really gone.
    """
    instances = Instance.objects.filter(series__study=study)
    keys = set(instances.values_list("storage_key", flat=True))
    hashes = set(instances.values_list("sha256", flat=True))
    study_id, owner_id, count = study.pk, study.owner_id, study.num_instances
    # Only an object store holds bundles.
    series_bundles = (
        bundles.bundles_of(study.series.values_list("id", flat=True)).values()
        if blobs.on_object_storage()
        else ()
    )
    summary_title, summary_date = study.title, study.study_date

    with transaction.atomic():
        # Documents attached to the study stay in the vault (the foreign key sets null):
        # a hospital's report is still the patient's, even once the images are gone.
        study.delete()

    removed = 0
    for key in sorted(keys):
        try:
            removed += blobs.delete_if_unreferenced(key)
        except Exception:
            log.exception("could not remove blob %s after deleting a study", key)
    for sha256 in sorted(hashes):
        if Instance.objects.filter(owner_id=owner_id, sha256=sha256).exists():
            continue
        try:
            default_storage.delete(thumbnails.thumbnail_key(owner_id, sha256))
        except Exception:
            log.exception("could not remove a cached thumbnail after deleting a study")
    bundles.delete_bundles(series_bundles)
    log.info("deleted study %s: %d instances, %d blobs", study_id, count, removed)
    return DeletedStudy(summary_title, summary_date, count, removed)
