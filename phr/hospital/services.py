"""The rules of hospital push, shared by DICOMweb (STOW-RS) and DIMSE (C-STORE).

1. the organisation proves who it is (a bearer token, or a registered calling node);
2. it names the patient by a deposit code the patient gave it;
3. every file goes through the vault's one ingest service into the patient's Inbox;
4. the patient is told, once per delivery, and decides in the Inbox.

Nothing here needs an HTTP request or a DIMSE association.
"""

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from phr.hospital.models import (
    DEPOSIT_CODE_LENGTH,
    ApiToken,
    DepositCode,
    DicomNode,
    NewDepositCode,
    Organisation,
    hash_deposit_code,
)
from phr.lib import codes, ratelimit
from phr.vault import bundles, lifecycle
from phr.vault.indexing import recount_study
from phr.vault.ingest import Delivery, IngestResult, Outcome, ingest_file
from phr.vault.models import Source, Study

log = logging.getLogger(__name__)

# Writing last_used_at on every request would turn each stored image into an extra UPDATE.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class DepositRefused(Exception):
    """Why a deposit can't go ahead. `reason` is one of the class constants."""

    UNKNOWN_CODE = "unknown_code"  # wrong, expired or revoked: deliberately indistinguishable
    NOT_ALLOWED = "not_allowed"  # the patient restricted the code to another organisation
    RATE_LIMITED = "rate_limited"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --- who is sending ----------------------------------------------------------------------------


def authenticate_token(authorization_header: str) -> Organisation | None:
    """The organisation behind an `Authorization: Bearer …` header, or None."""
    scheme, _, value = (authorization_header or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    token = ApiToken.find(value.strip())
    if token is None:
        return None
    _touch(ApiToken.objects.filter(pk=token.pk), token.last_used_at)
    return token.organisation


def node_organisation(calling_ae_title: str, address: str) -> Organisation | None:
    """The organisation whose registered node this association comes from, or None."""
    candidates = DicomNode.objects.select_related("organisation").filter(
        ae_title=(calling_ae_title or "").strip(), organisation__is_active=True
    )
    for node in candidates:
        if node.admits(calling_ae_title, address):
            return node.organisation
    return None


# --- which patient -----------------------------------------------------------------------------


def open_deposit(typed_code: str, organisation: Organisation, ip: str | None) -> DepositCode:
    """The live deposit code `typed_code` names, if `organisation` may use it.

    Wrong, expired and revoked codes all fail the same way and count against the organisation
    (its token, whatever address it sends from), so a hospital's token can't be used to guess
    patients; apart from the doctors' counters (phr.lib.ratelimit)."""
    if ratelimit.deposit_is_blocked(organisation.pk):
        raise DepositRefused(DepositRefused.RATE_LIMITED)
    code = codes.normalise_code(typed_code, DEPOSIT_CODE_LENGTH)
    deposit = (
        DepositCode.objects.live()
        .select_related("owner")
        .filter(code_hash=hash_deposit_code(code))
        .first()
        if code
        else None
    )
    if deposit is None or not deposit.owner.is_active:
        under_attack = ratelimit.deposit_site_under_attack()
        ratelimit.record_deposit_failure(organisation.pk)
        ratelimit.slow_down(under_attack)
        raise DepositRefused(DepositRefused.UNKNOWN_CODE)
    if not deposit.admits(organisation):
        raise DepositRefused(DepositRefused.NOT_ALLOWED)
    _touch(DepositCode.objects.filter(pk=deposit.pk), deposit.last_used_at)
    return deposit


def _touch(queryset, last_used_at) -> None:
    now = timezone.now()
    if last_used_at is None or now - last_used_at > LAST_USED_RESOLUTION:
        queryset.update(last_used_at=now)


# --- receiving ---------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    """What one request or association brought, for the logs and the patient's email.

    Counts only, never the results themselves: a PACS may push tens of thousands of images in
    one association, and memory must not grow with them."""

    deposit: DepositCode
    organisation: Organisation
    received_at: datetime = field(default_factory=timezone.now)
    outcomes: Counter = field(default_factory=Counter)
    study_ids: set = field(default_factory=set)  # studies that received new images
    new_per_series: Counter = field(default_factory=Counter)  # series id -> images stored

    @property
    def images_stored(self) -> int:
        return self.outcomes[Outcome.STORED] + self.outcomes[Outcome.CONFLICT]


def receive_file(
    report: DeliveryReport, fileobj, filename: str, expected_study_uid: str | None = None
) -> IngestResult:
    """One deposited file into the patient's Inbox, through the vault's ingest service."""
    delivery = Delivery(report.organisation, report.received_at, expected_study_uid)
    result = ingest_file(
        report.deposit.owner, fileobj, filename=filename, source=Source.HOSPITAL, delivery=delivery
    )
    report.outcomes[result.outcome] += 1
    if result.outcome in (Outcome.STORED, Outcome.CONFLICT) and result.study is not None:
        report.study_ids.add(result.study.pk)
        report.new_per_series[result.instance.series_id] += 1
    return result


def finish_delivery(report: DeliveryReport, site_url: str = "") -> None:
    """Tell the patient, once per delivery, that something new is waiting in the Inbox, and
    have the delivered series' bundles built before the patient opens them."""
    if not report.images_stored:
        return
    _tell_the_patient(report, site_url)
    # A delivery is the one moment a hospital says "that's all for now". Only series it brought
    # several images of: a PACS sending one image per request would otherwise have a bundle
    # built, and superseded, per image; those series get theirs when first viewed.
    bundles.prepare_series(
        [pk for pk, count in report.new_per_series.items() if count >= bundles.MIN_FILES]
    )


def _tell_the_patient(report: DeliveryReport, site_url: str) -> None:
    log.info(
        "deposit from %s: %d new images in %d studies",
        report.organisation,
        report.images_stored,
        len(report.study_ids),
    )
    owner = report.deposit.owner
    context = {
        "organisation": report.organisation,
        "images": report.images_stored,
        "studies": len(report.study_ids),
        "inbox_url": site_url + reverse("hospital:inbox"),
        "site_name": settings.SITE_NAME,
        "user": owner,
    }
    try:
        send_mail(
            subject=render_to_string("hospital/email/delivered_subject.txt", context).strip(),
            message=render_to_string("hospital/email/delivered_body.txt", context),
            from_email=None,
            recipient_list=[owner.email],
        )
    except Exception:
        # The images are safely in the Inbox; a mail server hiccup must not fail the hospital.
        log.exception("could not email %s about a deposit", owner.pk)


# --- the patient's side ------------------------------------------------------------------------


def create_deposit_code(
    owner, *, label: str, expires_at: datetime, organisation: Organisation | None = None
) -> tuple[DepositCode, NewDepositCode]:
    deposit = DepositCode(
        owner=owner, label=label, organisation=organisation, expires_at=expires_at
    )
    plain = deposit.issue_code()
    deposit.save()
    return deposit, plain


def revoke_deposit_code(deposit: DepositCode) -> bool:
    return bool(
        DepositCode.objects.filter(pk=deposit.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    )


def accept(study: Study) -> Study:
    """Move a study from the Inbox into the vault, merging into the vault's copy if the patient
    already keeps that study (new series join it; series it already has gain the new images)."""
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study.pk, inbox=True)
        kept = (
            Study.objects.select_for_update()
            .filter(owner=study.owner, study_instance_uid=study.study_instance_uid, inbox=False)
            .first()
        )
        if kept is None:
            study.inbox = False
            study.save(update_fields=["inbox", "updated_at"])
            return study
        for series in list(study.series.all()):
            existing = kept.series.filter(series_instance_uid=series.series_instance_uid).first()
            if existing is None:
                series.study = kept
                series.save(update_fields=["study"])
            else:
                series.instances.update(series=existing)
                series.delete()
        study.documents.update(study=kept)
        study.delete()
        recount_study(kept)
    return kept


def reject(study: Study) -> None:
    """Delete an Inbox study and every blob only it used (images shared with the vault stay)."""
    lifecycle.delete_study(study)
