"""The rules of sharing: creating, opening, using, revoking and expiring a share, and the audit
trail each of those leaves. Views call these; none of them needs an HTTP request."""

import enum
import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from phr.lib import ratelimit
from phr.sharing import emails
from phr.sharing.models import (
    MAX_WRONG_PINS,
    AccessEvent,
    DicomwebToken,
    Event,
    FailedRedemption,
    Secrets,
    Share,
    Status,
)
from phr.vault import bundles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Client:
    """Who is on the other end, as far as the access log tells the patient."""

    ip: str | None
    user_agent: str = ""
    visitor: str = ""

    @classmethod
    def from_request(cls, request, visitor: str = "") -> "Client":
        return cls(
            ip=request.META.get("REMOTE_ADDR") or None,
            user_agent=(request.headers.get("User-Agent") or "")[:300],
            visitor=visitor,
        )


def record(share: Share, kind: str, client: Client | None = None, **fields) -> AccessEvent:
    client = client or Client(ip=None)
    return AccessEvent.objects.create(
        share=share,
        kind=kind,
        ip=client.ip,
        user_agent=client.user_agent,
        visitor=client.visitor,
        **fields,
    )


# --- the patient's side --------------------------------------------------------------------


def single_line(text: str) -> str:
    """A label is one line: line breaks and tabs (from a paste, or a client other than our
    form) become single spaces."""
    return " ".join(text.split())


@transaction.atomic
def create_share(
    owner,
    studies,
    *,
    label: str,
    expires_at: datetime,
    pin: str = "",
    recipient_email: str = "",
    allow_download: bool = False,
    notify_on_open: bool = True,
    client: Client | None = None,
) -> tuple[Share, Secrets]:
    studies = list(studies)
    if not studies or any(study.owner_id != owner.pk or study.inbox for study in studies):
        # The form only offers the owner's own studies, never what waits in the Inbox; this
        # guards every other caller.
        raise ValueError("A share holds one or more of its owner's own studies.")
    share = Share(
        owner=owner,
        label=single_line(label),
        recipient_email=recipient_email,
        expires_at=expires_at,
        allow_download=allow_download,
        notify_on_open=notify_on_open,
    )
    secrets = share.issue_secrets(pin=pin)
    share.save()
    share.studies.set(studies)
    record(share, Event.CREATED, client, detail=_scope_words(studies))
    transaction.on_commit(lambda: bundles.prepare(studies))
    return share, secrets


def email_link(share: Share, link: str, client: Client | None = None) -> None:
    # The log says it was emailed only if the mail server took it.
    if share.recipient_email and emails.send_link_to_recipient(share, link):
        record(share, Event.EMAILED, client, detail=share.recipient_email)


def revoke(share: Share, client: Client | None = None) -> bool:
    """Stop a share at once. Returns False if it had already been stopped."""
    now = timezone.now()
    stopped = Share.objects.filter(pk=share.pk, revoked_at__isnull=True).update(revoked_at=now)
    if stopped:
        share.revoked_at = now
        record(share, Event.REVOKED, client)
    return bool(stopped)


def note_expiry(share: Share) -> None:
    """Write the 'expired' line of the log once, dated when the share expired.

    Nothing runs at the moment of expiry; whoever first notices (the patient's shares page, a
    doctor's request) writes it.
    """
    if share.status == Status.EXPIRED and not share.events.filter(kind=Event.EXPIRED).exists():
        record(share, Event.EXPIRED, at=share.expires_at)


# --- the doctor's side ---------------------------------------------------------------------


class Outcome(enum.Enum):
    OPENED = "opened"
    FAILED = "failed"  # one answer for every kind of failure: no oracle
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class Redemption:
    outcome: Outcome
    share: Share | None = None
    client: Client | None = None


def redeem(*, via: str, secret: str, pin: str, client: Client, site_url: str = "") -> Redemption:
    """Exchange a typed code (via="code") or a link token (via="link"), plus the PIN if the
    share has one, for the share. Every failure is counted and logged.

    `site_url` (e.g. "https://vault.example.org") makes the patient's first-open email link
    to their shares page."""
    if ratelimit.is_blocked(client.ip):
        _log_failure(via, FailedRedemption.Reason.RATE_LIMITED, client, count=False)
        return Redemption(Outcome.RATE_LIMITED)
    share = Share.find_by_code(secret) if via == "code" else Share.find_by_token(secret)
    if share is None:
        _log_failure(via, FailedRedemption.Reason.UNKNOWN, client)
        return Redemption(Outcome.FAILED)
    status = share.status
    if status != Status.ACTIVE:
        note_expiry(share)
        record(share, Event.REFUSED, client, detail=f"Tried while {Status(status).label.lower()}")
        _log_failure(via, status, client, share=share)
        return Redemption(Outcome.FAILED)
    if not share.check_pin(pin):
        _wrong_pin(share, client)
        _log_failure(via, FailedRedemption.Reason.WRONG_PIN, client, share=share)
        return Redemption(Outcome.FAILED)
    _opened(share, client, site_url)
    return Redemption(Outcome.OPENED, share, client)


def _wrong_pin(share: Share, client: Client) -> None:
    Share.objects.filter(pk=share.pk).update(wrong_pins=F("wrong_pins") + 1)
    share.refresh_from_db(fields=["wrong_pins", "locked_at"])
    record(share, Event.WRONG_PIN, client, detail=f"Wrong PIN number {share.wrong_pins}")
    if share.wrong_pins >= MAX_WRONG_PINS:
        # The condition makes exactly one request the one that locks (and logs the lockout).
        now = timezone.now()
        if Share.objects.filter(pk=share.pk, locked_at__isnull=True).update(locked_at=now):
            share.locked_at = now
            record(
                share,
                Event.LOCKED,
                client,
                detail=f"Locked after {MAX_WRONG_PINS} wrong PINs",
            )


def _opened(share: Share, client: Client, site_url: str) -> None:
    now = timezone.now()
    Share.objects.filter(pk=share.pk).update(last_used_at=now)
    record(share, Event.OPENED, client)
    first = Share.objects.filter(pk=share.pk, first_opened_at__isnull=True).update(
        first_opened_at=now
    )
    if first and share.notify_on_open:
        emails.send_first_open_notice(share, when=now, client=client, site_url=site_url)


def _log_failure(via, reason, client: Client, share=None, count=True) -> None:
    # The threshold's own failures go at full speed, the ones past it wait (the model's terms).
    under_attack = ratelimit.site_under_attack()
    if count:
        ratelimit.record_failure(client.ip)
    FailedRedemption.objects.create(
        via=via, reason=reason, ip=client.ip, user_agent=client.user_agent, share=share
    )
    # Never the code, token or PIN: only what kind of failure, and from where.
    log.warning("share redemption failed: via=%s reason=%s ip=%s", via, reason, client.ip)
    # Only failures wait: a right code is never held up.
    ratelimit.slow_down(under_attack)


def refused_after_end(share: Share, client: Client) -> None:
    """A doctor's open session came back after the share ended: log it, and the expiry."""
    note_expiry(share)
    record(share, Event.REFUSED, client, detail="An open session was refused")


def _scope_words(studies) -> str:
    words = ", ".join(study_words(study) for study in studies)
    return words if len(words) <= 300 else words[:297] + "…"


def study_words(study) -> str:
    when = study.study_date.strftime("%-d %b %Y") if study.study_date else "date unknown"
    return f"{study.title} ({when})"


def issue_dicomweb_token(share: Share, client: Client) -> str:
    """A DICOMweb token for `share`, for the browser `client` (the plaintext, shown once); the
    patient's log says so. Only for a live share that allows downloads: the token retrieves
    files."""
    if not (share.is_live and share.allow_download):
        raise PermissionError("this share does not allow downloads")
    _token, plaintext = DicomwebToken.issue(share.owner, share=share, visitor=client.visitor)
    record(share, Event.DICOMWEB_TOKEN, client)
    return plaintext
