"""Delete an account for real (GDPR Art. 17): every share and deposit code stops at once, every
row and every stored byte goes, and only an anonymous ErasureRecord remains.

Order matters:
  1. stop shares and deposit codes first, in their own commit: even if anything later fails,
     nobody can open or send anything any more;
  2. delete the rows in one transaction (the user row cascades to studies, series, images,
     documents, shares and their logs, deposit codes, email addresses, authenticators), and
     every session signed in as the patient (other browsers and devices);
  3. only then delete the blobs (everything under the account's storage folders, and on S3
     any incomplete multipart upload there, whose parts hold the patient's bytes too), so a
     failure in 2 loses nothing; any blob that can't be removed is counted on the record and
     left for `check_vault --fix` (it is an orphan now).
"""

import logging

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.sessions import delete_sessions_of
from phr.hospital.models import DepositCode
from phr.rights.models import ErasureRecord
from phr.sharing.models import Share
from phr.vault import blobs, bundles
from phr.vault.models import Document, Instance, Study

log = logging.getLogger(__name__)


def erase_account(user) -> ErasureRecord:
    now = timezone.now()
    with transaction.atomic():
        shares_stopped = Share.objects.live(now).filter(owner=user).update(revoked_at=now)
        codes_stopped = DepositCode.objects.live(now).filter(owner=user).update(revoked_at=now)

    email, name = user.email, user.full_name
    image_sizes = list(Instance.objects.filter(owner=user).values_list("size", flat=True))
    document_sizes = list(Document.objects.filter(owner=user).values_list("size", flat=True))
    record = ErasureRecord(
        erased_at=now,
        studies=Study.objects.filter(owner=user).count(),
        images=len(image_sizes),
        documents=len(document_sizes),
        bytes=sum(image_sizes) + sum(document_sizes),
        shares_stopped=shares_stopped,
        deposit_codes_stopped=codes_stopped,
    )
    # Every blob key is derived from the owner (phr.vault.blobs, thumbnails, bundles), so these
    # three folders hold all of the account's bytes, leftovers of failed ingests included.
    owner_folders = [f"vault/{user.pk}", f"thumbs/{user.pk}", f"{bundles.BUNDLES_ROOT}/{user.pk}"]

    with transaction.atomic():
        # Login-attempt logs carry the email address: they go too.
        for model in (AccessAttempt, AccessLog, AccessFailureLog):
            model.objects.filter(username__iexact=email).delete()
        delete_sessions_of(user)
        user.delete()
        record.save()

    record.blobs_left_behind = _delete_blobs(owner_folders)
    if record.blobs_left_behind:
        record.save(update_fields=["blobs_left_behind"])
    _confirm(email, name)
    return record


def _delete_blobs(folders: list[str]) -> int:
    """Delete everything stored under the account's folders, finished or not; returns how
    many blobs and incomplete uploads could not go."""
    failed = 0
    for folder in folders:
        for key in list(blobs.keys_under(folder)):
            try:
                default_storage.delete(key)
            except Exception:
                failed += 1
                log.exception("erasure: could not delete blob %s", key)
        failed += _abort_incomplete_uploads(folder)
    return failed


def _abort_incomplete_uploads(folder: str) -> int:
    failed = 0
    try:
        uploads = list(blobs.incomplete_uploads_under(folder))
    except Exception:
        log.exception("erasure: could not list incomplete uploads under %s", folder)
        return 1
    for upload in uploads:
        try:
            blobs.abort_incomplete_upload(upload)
        except Exception:
            failed += 1
            log.exception("erasure: could not abort the incomplete upload of %s", upload.key)
    return failed


def _confirm(email: str, name: str) -> None:
    context = {"name": name, "site_name": settings.SITE_NAME}
    try:
        send_mail(
            subject=render_to_string("rights/email/erased_subject.txt", context).strip(),
            message=render_to_string("rights/email/erased_body.txt", context),
            from_email=None,
            recipient_list=[email],
        )
    except Exception:
        # The erasure is done; a mail server hiccup must not make it look as if it failed.
        log.exception("erasure: confirmation email could not be sent")
