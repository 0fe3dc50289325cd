"""The doctor's session: which shares this browser has opened, kept in the Django session.

A doctor has no account. Opening a share adds a grant {share id: {"until": ...}} to the
session, apart from anything a patient login puts there. A grant is only a claim: every request
asks the database again whether its share is still live (not revoked, locked or expired), so a
revocation takes effect on the doctor's very next request. A grant ends at the share's expiry or
12 hours after it was opened, whichever comes first; several shares can be open in one browser.
"""

import secrets
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from phr.sharing import services
from phr.sharing.models import Share
from phr.vault.models import Study

GRANTS_SESSION_KEY = "phr_doctor_grants"
# A random tag per doctor's browser, so the patient's log can tell two browsers apart.
VISITOR_SESSION_KEY = "phr_doctor_visitor"


# A DICOMweb token's request carries its grant here instead of in a session (phr.dicomweb).
GRANTS_BY_BEARER = "phr_grants_by_bearer"
VISITOR_BY_BEARER = "phr_visitor_by_bearer"


def grant_by_token(request, share: Share, visitor: str) -> None:
    """For this request only: the access a DICOMweb token gives, the grant of the browser that
    asked for it. No session is made or changed; each request shows its token again."""
    setattr(request, GRANTS_BY_BEARER, {str(share.pk): {"until": share.expires_at.timestamp()}})
    setattr(request, VISITOR_BY_BEARER, visitor)


def _grants(request) -> dict:
    by_token = getattr(request, GRANTS_BY_BEARER, None)
    if by_token is not None:
        return by_token
    session = getattr(request, "session", None)
    if session is None:
        return {}
    return session.get(GRANTS_SESSION_KEY) or {}


def holds_any(request) -> bool:
    """Whether this browser opened a share (live or not) and hasn't left it."""
    return bool(_grants(request))


def visitor_tag(request) -> str:
    """This browser's tag, or a new one. Stored only once a share opens (add_grant), so a
    failed guess leaves no session behind."""
    by_token = getattr(request, VISITOR_BY_BEARER, None)
    if by_token:
        return by_token
    session = getattr(request, "session", None)
    return (session and session.get(VISITOR_SESSION_KEY)) or secrets.token_hex(4)


def add_grant(request, share: Share, visitor: str) -> None:
    """Start (or renew) this browser's access to `share`."""
    grants = dict(_grants(request))
    until = min(share.expires_at.timestamp(), time.time() + settings.PHR_DOCTOR_SESSION_SECONDS)
    grants[str(share.pk)] = {"until": until}
    # A new session key on every grant: nobody who planted a session cookie beforehand
    # (session fixation) inherits the access.
    request.session.cycle_key()
    request.session[GRANTS_SESSION_KEY] = grants
    request.session[VISITOR_SESSION_KEY] = visitor


def refusal_logged(request, share: Share) -> bool:
    return bool(_grants(request).get(str(share.pk), {}).get("refusal_logged"))


def note_refusal_logged(request, shares) -> None:
    """Remember that these ended shares' refusal is in the access log, while their grants stay
    so that the doctor's pages can still say plainly that the share has ended."""
    grants = {key: dict(value) for key, value in _grants(request).items()}
    for share in shares:
        grants[str(share.pk)]["refusal_logged"] = True
    request.session[GRANTS_SESSION_KEY] = grants


def drop_grants(request, share_ids) -> None:
    grants = {key: value for key, value in _grants(request).items() if key not in share_ids}
    request.session[GRANTS_SESSION_KEY] = grants


def end_session(request) -> None:
    request.session.pop(GRANTS_SESSION_KEY, None)
    request.session.pop(VISITOR_SESSION_KEY, None)
    request.session.cycle_key()


def _unexpired_grant_ids(request) -> list[str]:
    now = time.time()
    return [key for key, grant in _grants(request).items() if grant.get("until", 0) > now]


def live_shares(request):
    """The shares this browser may use right now: granted, within the grant's time, and still
    live in the database at this very moment."""
    ids = _unexpired_grant_ids(request)
    if not ids:
        return Share.objects.none()
    return Share.objects.live().filter(pk__in=ids)


def access_ends_at(request, study) -> float:
    """When this browser's access to `study` ends (a Unix time): the latest end among the
    grants of its live shares that hold the study (each is the share's end or the 12-hour
    limit, whichever comes first); 0 when it has none."""
    grants = _grants(request)
    holding = [share.pk for share in shares_holding(request, study)]
    return max((grants[str(pk)]["until"] for pk in holding if str(pk) in grants), default=0)


def shared_studies(request):
    """Exactly the studies of this browser's live shares (and only the share owner's)."""
    if not _unexpired_grant_ids(request):
        return Study.objects.none()
    through = Share.studies.through.objects.filter(
        share__in=live_shares(request), study__owner=F("share__owner")
    )
    return Study.objects.in_vault().filter(pk__in=through.values("study_id"))


@dataclass
class GrantCheck:
    live: list = field(default_factory=list)
    ended: list = field(default_factory=list)  # shares this browser had open that have ended
    gone: list = field(default_factory=list)  # grant keys whose share no longer exists


def check_grants(request) -> GrantCheck:
    """Sort this browser's grants into live shares and ended ones (revoked, expired, locked,
    or past the 12-hour limit), for the doctor pages to tell the doctor plainly."""
    grants = _grants(request)
    if not grants:
        return GrantCheck()
    shares = {str(share.pk): share for share in Share.objects.filter(pk__in=list(grants))}
    now = timezone.now()
    result = GrantCheck()
    for key, grant in grants.items():
        share = shares.get(key)
        if share is None:
            result.gone.append(key)  # deleted with its owner's account
            continue
        if share.status_at(now) == "active" and grant.get("until", 0) > now.timestamp():
            result.live.append(share)
        else:
            result.ended.append(share)
    return result


def shares_holding(request, study) -> list[Share]:
    """This browser's live shares that include `study`, checked in the database once per
    request (an image request asks twice: to log the look, and how long it may be cached)."""
    asked = request.__dict__.setdefault("_phr_shares_holding", {})
    if study.pk not in asked:
        asked[study.pk] = list(live_shares(request).filter(studies=study))
    return asked[study.pk]


def may_download(request, study) -> bool:
    """Whether one of this browser's live shares holding `study` allows downloading it."""
    return live_shares(request).filter(studies=study, allow_download=True).exists()


def refuse_ended(request, *, forget: bool) -> GrantCheck:
    """Sort this browser's grants (check_grants) and log each share that has ended as refused
    in its patient's access log, once per browser: the viewer may ask for many images after a
    revocation. `forget`: drop the ended and gone grants too (the
    doctor's pages do, once they have said that the share ended)."""
    check = check_grants(request)
    unlogged = [share for share in check.ended if not refusal_logged(request, share)]
    if unlogged:
        client = services.Client.from_request(request, visitor=visitor_tag(request))
        for share in unlogged:
            services.refused_after_end(share, client)
    if forget and (check.ended or check.gone):
        drop_grants(request, [str(share.pk) for share in check.ended] + check.gone)
    elif unlogged:
        note_refusal_logged(request, unlogged)
    return check
