"""SECURITY 7, 8, 11, 12, 21: opening a share with a code or a link, and every way that fails."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from phr.sharing import doctor as doctor_session
from phr.sharing.models import MAX_WRONG_PINS, AccessEvent, Event, FailedRedemption, Share
from tests.sharing.conftest import (
    DOCTOR_AGENT,
    DOCTOR_IP,
    make_share,
    open_with_code,
    open_with_link,
)

pytestmark = pytest.mark.django_db

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"')


TOKEN = re.compile(r"/s/[A-Za-z0-9_-]{43}")
# The code the doctor typed, given back in its field after a failure: their own input.
TYPED_CODE = re.compile(r'(name="code"[^>]*?) value="[^"]*"')


def body(response) -> str:
    """The page as a person reads it: minus the per-response CSRF value, the link's own
    address (each share's link posts back to itself) and the code the doctor typed."""
    page = TOKEN.sub("/s/<token>", CSRF.sub("", response.content.decode()))
    return TYPED_CODE.sub(r"\1", page)


def grants(client) -> dict:
    return client.session.get(doctor_session.GRANTS_SESSION_KEY) or {}


def test_the_code_opens_the_share_in_one_request_with_its_pin(patient, ct, doctor):
    share, plain = make_share(patient, [ct], pin="739154")
    typed = plain.formatted_code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    response = open_with_code(doctor, typed, "739154")
    assert response.status_code == 302 and response.url == "/shared/"
    assert list(grants(doctor)) == [str(share.pk)]
    event = AccessEvent.objects.get(share=share, kind=Event.OPENED)
    assert (event.ip, event.user_agent) == (DOCTOR_IP, DOCTOR_AGENT)
    assert event.visitor == doctor.session[doctor_session.VISITOR_SESSION_KEY]


def test_after_a_wrong_pin_the_code_stays_typed_and_the_pin_does_not(patient, ct, doctor):
    _share, plain = make_share(patient, [ct], pin="739154")
    typed = plain.formatted_code.lower()
    response = open_with_code(doctor, typed, "111111")
    page = response.content.decode()
    assert response.status_code == 403
    assert re.search(rf'name="code"[^>]*value="{re.escape(typed)}"', page), "the code was cleared"
    assert "111111" not in page


def test_get_on_a_magic_link_has_no_side_effects(patient, ct, doctor):
    share, plain = make_share(patient, [ct])
    events_before = AccessEvent.objects.count()
    response = doctor.get(f"/s/{plain.token}")
    assert response.status_code == 200
    assert "Open the scans" in response.content.decode()
    assert AccessEvent.objects.count() == events_before
    assert not FailedRedemption.objects.exists()
    assert grants(doctor) == {}
    assert "sessionid" not in response.cookies
    share.refresh_from_db()
    assert share.first_opened_at is None and share.last_used_at is None
    assert mail.outbox == []
    assert doctor.get("/shared/").status_code == 302  # not let in


def test_the_post_on_a_magic_link_opens_the_share(patient, ct, doctor):
    share, plain = make_share(patient, [ct])
    response = open_with_link(doctor, plain.token)
    assert response.status_code == 302 and response.url == "/shared/"
    assert str(share.pk) in grants(doctor)
    assert AccessEvent.objects.filter(share=share, kind=Event.OPENED).count() == 1


def test_a_link_with_a_pin_asks_for_it_and_needs_it(patient, ct, doctor):
    _share, plain = make_share(patient, [ct], pin="739154")
    assert 'name="pin"' in doctor.get(f"/s/{plain.token}").content.decode()
    assert open_with_link(doctor, plain.token).status_code == 403
    assert open_with_link(doctor, plain.token, "739154").status_code == 302


def test_the_patient_is_emailed_the_first_time_only(patient, ct, doctor):
    share, plain = make_share(patient, [ct])
    open_with_code(doctor, plain.code)
    open_with_link(doctor, plain.token)
    [message] = mail.outbox
    assert message.to == [patient.email]
    assert "Dr. Smith, Mayo Clinic" in message.body
    assert f"http://testserver/shares/{share.pk}/" in message.body
    assert plain.code not in message.body and plain.token not in message.body


def test_no_email_when_the_patient_said_so(patient, ct, doctor):
    _share, plain = make_share(patient, [ct], notify_on_open=False)
    open_with_code(doctor, plain.code)
    assert mail.outbox == []


def failing_responses(patient, ct, doctor, via):
    """The same share refused four ways, and an unknown secret: returns the five responses."""
    opener = open_with_code if via == "code" else open_with_link

    def secret(plain):
        return plain.code if via == "code" else plain.token

    _wrong_pin, plain_pin = make_share(patient, [ct], pin="739154")
    revoked, plain_revoked = make_share(patient, [ct], pin="739154")
    Share.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    expired, plain_expired = make_share(patient, [ct], pin="739154")
    Share.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    locked, plain_locked = make_share(patient, [ct], pin="739154")
    Share.objects.filter(pk=locked.pk).update(locked_at=timezone.now())
    _other, plain_other = make_share(patient, [ct], pin="739154")
    unknown = plain_other.code[:-1] + ("0" if plain_other.code[-1] != "0" else "1")
    if via == "link":
        unknown = "A" * 43
    return {
        "wrong code": opener(doctor, unknown, "739154"),
        "wrong pin": opener(doctor, secret(plain_pin), "111111"),
        "revoked": opener(doctor, secret(plain_revoked), "739154"),
        "expired": opener(doctor, secret(plain_expired), "739154"),
        "locked": opener(doctor, secret(plain_locked), "739154"),
    }


def test_every_failure_at_access_gets_the_same_answer(patient, ct, doctor):
    responses = failing_responses(patient, ct, doctor, "code")
    statuses = {name: response.status_code for name, response in responses.items()}
    assert set(statuses.values()) == {403}, statuses
    bodies = {body(response) for response in responses.values()}
    assert len(bodies) == 1
    assert "couldn't open the shared scans" in bodies.pop()
    assert grants(doctor) == {}


def test_every_failure_of_a_link_gets_the_same_answer(patient, ct, doctor):
    responses = failing_responses(patient, ct, doctor, "link")
    assert {response.status_code for response in responses.values()} == {403}
    # The unknown token's page cannot know whether a PIN is wanted; the four known ones (wrong
    # PIN, stopped, expired, locked) are word for word the same.
    known = {body(response) for name, response in responses.items() if name != "wrong code"}
    assert len(known) == 1


def test_every_failure_is_logged_site_wide_and_on_the_share_when_known(patient, ct, doctor):
    failing_responses(patient, ct, doctor, "code")
    reasons = sorted(FailedRedemption.objects.values_list("reason", flat=True))
    assert reasons == ["expired", "locked", "revoked", "unknown", "wrong_pin"]
    assert all(row.ip == DOCTOR_IP for row in FailedRedemption.objects.all())
    logged = AccessEvent.objects.filter(kind__in=[Event.WRONG_PIN, Event.REFUSED])
    assert logged.count() == 4
    assert all(event.user_agent == DOCTOR_AGENT for event in logged)
    assert AccessEvent.objects.filter(kind=Event.EXPIRED).count() == 1


def test_ten_wrong_pins_lock_the_share_and_the_patient_sees_it(
    patient, ct, doctor, sharer, settings
):
    settings.PHR_SHARE_FAILURES_PER_IP_PER_MINUTE = 100
    share, plain = make_share(patient, [ct], pin="739154")
    for attempt in range(MAX_WRONG_PINS):
        assert open_with_code(doctor, plain.code, f"{attempt:06d}").status_code == 403
    share.refresh_from_db()
    assert share.locked_at is not None and share.status == "locked"
    # Now even the right PIN is refused, with the same answer as any failure.
    assert open_with_code(doctor, plain.code, "739154").status_code == 403
    assert AccessEvent.objects.filter(share=share, kind=Event.WRONG_PIN).count() == 10
    assert AccessEvent.objects.filter(share=share, kind=Event.LOCKED).count() == 1

    listing = sharer.get("/shares/").content.decode()
    assert "Locked</span>" in listing and "wrong PIN too many times" in listing
    log = sharer.get(f"/shares/{share.pk}/").content.decode()
    assert "Locked after too many wrong PINs" in log and "Wrong PIN typed" in log


def test_nine_wrong_pins_do_not_lock(patient, ct, doctor):
    share, plain = make_share(patient, [ct], pin="739154")
    for attempt in range(MAX_WRONG_PINS - 1):
        open_with_code(doctor, plain.code, f"{attempt:06d}")
    assert open_with_code(doctor, plain.code, "739154").status_code == 302
    share.refresh_from_db()
    assert share.locked_at is None


def test_failures_per_address_are_limited(patient, ct, doctor, client, settings):
    settings.PHR_SHARE_FAILURES_PER_IP_PER_MINUTE = 3
    _share, plain = make_share(patient, [ct])
    for _ in range(3):
        assert open_with_code(doctor, "0000-0000-0000-0000").status_code == 403
    limited = open_with_code(doctor, plain.code)  # even the right code, once over the limit
    assert limited.status_code == 429
    assert limited["Retry-After"] == "120"  # its failures count this minute and the next
    assert "wait two minutes" in limited.content.decode()
    assert open_with_link(doctor, plain.token).status_code == 429
    assert FailedRedemption.objects.filter(reason="rate_limited").count() == 2
    # Another address is not held up by this one.
    assert open_with_code(client, plain.code).status_code == 302


def test_past_the_site_wide_threshold_guesses_are_slowed_and_a_right_code_still_opens(
    patient, ct, settings, monkeypatch
):
    """A few addresses' wrong guesses must not make every share unopenable: past the site-wide
    threshold each failed check costs a server-side delay (slowing every guesser at once), and
    a correct code still opens at once."""
    from django.test import Client

    from phr.lib import ratelimit

    delays = []
    monkeypatch.setattr(ratelimit.time, "sleep", delays.append)
    settings.PHR_SHARE_FAILURES_SITE_PER_HOUR = 5
    settings.PHR_SHARE_SLOWDOWN_SECONDS = 1.5
    _share, plain = make_share(patient, [ct])
    for n in range(5):
        guesser = Client(REMOTE_ADDR=f"198.51.100.{n}")
        assert open_with_code(guesser, "0000-0000-0000-0000").status_code == 403
    assert delays == []  # below the threshold, no delay
    late = Client(REMOTE_ADDR="198.51.100.77")
    assert open_with_code(late, "0000-0000-0000-0000").status_code == 403
    assert open_with_link(late, "x" * 43).status_code == 403
    assert delays == [1.5, 1.5]
    fresh = Client(REMOTE_ADDR="192.0.2.99")
    assert open_with_code(fresh, plain.code).status_code == 302
    assert delays == [1.5, 1.5]  # the right code is not held up


@pytest.mark.parametrize("path", ["/access", "/s/{token}"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_code_and_link_pages_are_never_cached_or_referred(patient, ct, doctor, path, method):
    _share, plain = make_share(patient, [ct])
    url = path.format(token=plain.token)
    data = {"code": "0000-0000-0000-0000"} if path == "/access" else {}
    response = getattr(doctor, method)(url, data)
    # The origin at most, never the path with the token (phr.lib.http says why not
    # no-referrer), and nothing in the page overrides it.
    assert response["Referrer-Policy"] == "strict-origin"
    assert "no-store" in response["Cache-Control"]
    assert 'name="referrer"' not in response.content.decode()


def test_the_doctors_pages_are_never_cached_or_referred(patient, ct, doctor):
    _share, plain = make_share(patient, [ct])
    open_with_code(doctor, plain.code)
    for url in ["/shared/", f"/shared/studies/{ct.pk}/"]:
        response = doctor.get(url)
        assert response.status_code == 200
        assert response["Referrer-Policy"] == "strict-origin"
        assert "no-store" in response["Cache-Control"]


def test_a_signed_in_patient_is_told_to_use_a_private_window(patient_client, patient, ct):
    _share, plain = make_share(patient, [ct])
    response = open_with_code(patient_client, plain.code)
    assert response.status_code == 409
    assert "private" in response.content.decode()
    assert grants(patient_client) == {}
    assert not AccessEvent.objects.filter(kind=Event.OPENED).exists()


def test_a_label_is_one_line_and_its_email_never_fails_the_doctors_first_open(patient, ct, doctor):
    share, plain = make_share(patient, [ct], label="Dr. Smith\r\nMayo Clinic\tRochester")
    share.refresh_from_db()
    assert share.label == "Dr. Smith Mayo Clinic Rochester"  # one line, as the form says
    # A label written before the rule (or by any other path) still can't break the email.
    Share.objects.filter(pk=share.pk).update(label="Dr. Smith\nMayo Clinic")
    assert open_with_code(doctor, plain.code).status_code == 302
    [message] = mail.outbox
    assert "\n" not in message.subject and "Dr. Smith Mayo Clinic" in message.subject


def test_an_email_that_fails_is_tried_again_and_never_fails_the_request(
    patient, ct, doctor, settings, caplog
):
    from tests.support import failing_mail

    settings.EMAIL_BACKEND = "tests.support.failing_mail.RefusingBackend"
    failing_mail.attempts.clear()
    share, plain = make_share(patient, [ct])
    assert open_with_code(doctor, plain.code).status_code == 302
    assert len(failing_mail.attempts) == 2  # once, then once more
    assert "email could not be sent" in caplog.text
    share.refresh_from_db()
    assert share.first_opened_at is not None
