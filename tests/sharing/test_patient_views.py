"""The patient's side over HTTP: creating a share, the code shown once, the card, the list,
revoking; and every patient page for its owner, another patient, a doctor and a stranger."""

import re
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from phr.sharing.models import AccessEvent, Event, Share
from tests.conftest import login_with_totp, wait_for_fresh_totp_window
from tests.sharing.conftest import make_share, open_with_code, reauthenticate

pytestmark = pytest.mark.django_db

CODE_ON_PAGE = re.compile(r'id="access-code">([0-9A-Z]{4}(?:-[0-9A-Z]{4}){3})<')
LINK_ON_PAGE = re.compile(r'id="magic-link"[^>]*>(http://testserver/s/[A-Za-z0-9_-]{43})<')


def create(client, studies, **fields):
    data = {
        "studies": [str(study.pk) for study in studies],
        "label": "Dr. Smith, Mayo Clinic",
        "recipient_email": "",
        "expiry": "7",
        "pin": "",
        "allow_download": "no",
        "notify_on_open": "on",
        **fields,
    }
    return client.post(reverse("sharing:create"), data)


def revealed(client, share):
    page = client.get(reverse("sharing:created", args=[share.pk])).content.decode()
    return CODE_ON_PAGE.search(page).group(1), LINK_ON_PAGE.search(page).group(1), page


def test_the_create_page_lists_the_vault_and_preselects_a_study(sharer, ct, mr):
    page = sharer.get(reverse("sharing:create") + f"?study={mr.pk}").content.decode()
    assert f'value="{ct.pk}"' in page and f'value="{mr.pk}"' in page
    assert re.search(rf'value="{mr.pk}" checked', page)
    assert not re.search(rf'value="{ct.pk}" checked', page)
    assert "sharing/create.js" in page and "style=" not in page and "<script>" not in page


def test_the_create_page_gives_the_priors_button_only_the_imaging_modalities(sharer, ct):
    # create.js matches priors on these; a report (SR) or key images note (KO) beside the CT
    # is no kind of scan, and the page, not the script, knows which codes those are.
    ct.modalities = "CT SR KO"
    ct.save(update_fields=["modalities"])
    page = sharer.get(reverse("sharing:create")).content.decode()
    assert re.search(rf'value="{ct.pk}"[^>]*data-modalities="CT"', page)


def test_creating_a_share_shows_the_code_link_qr_and_card_once(sharer, patient, ct):
    response = create(sharer, [ct], pin="739154", expiry="30")
    share = Share.objects.get(owner=patient)
    assert response.status_code == 302
    assert response.url == reverse("sharing:created", args=[share.pk])

    code, _link, page = revealed(sharer, share)
    assert "<svg" in page and 'class="qr"' in page and "data:" not in page
    assert share.has_pin and share.allow_download is False
    assert timedelta(days=29, hours=23) < share.expires_at - timezone.now() <= timedelta(days=30)
    assert "739154" not in page  # the patient chose the PIN; we never show it back

    card = sharer.get(reverse("sharing:card", args=[share.pk]))
    assert card.status_code == 200
    body = card.content.decode()
    assert code in body and "<svg" in body and "http://testserver/access" in body
    assert card["Cache-Control"].count("no-store") == 1
    assert card["Referrer-Policy"] == "strict-origin"

    # "I've noted it": gone for good, even within the few minutes.
    sharer.post(reverse("sharing:hide", args=[share.pk]))
    assert sharer.get(reverse("sharing:created", args=[share.pk])).status_code == 404
    assert sharer.get(reverse("sharing:card", args=[share.pk])).status_code == 404


def test_the_code_is_no_longer_shown_after_a_few_minutes(sharer, patient, ct, settings):
    settings.PHR_SHARE_REVEAL_SECONDS = 1
    create(sharer, [ct])
    share = Share.objects.get(owner=patient)
    assert sharer.get(reverse("sharing:card", args=[share.pk])).status_code == 200
    time.sleep(1.1)
    gone = sharer.get(reverse("sharing:card", args=[share.pk]))
    assert gone.status_code == 404
    assert "can't show this code any more" in gone.content.decode()


def test_a_db_dump_holds_no_plaintext_code_token_or_pin(sharer, patient, ct):
    from django.db import connection

    create(sharer, [ct], pin="739154", recipient_email="smith@example.org")
    share = Share.objects.get(owner=patient)
    code, link, _page = revealed(sharer, share)  # still in the session right now
    token = link.rsplit("/", 1)[1]
    secrets = [code, code.replace("-", ""), token, "739154"]

    dump = []
    with connection.cursor() as cursor:
        # Every table, not only sharing's: sessions and cache included.
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (names from introspection)
            dump.extend(str(value) for row in cursor.fetchall() for value in row)
    text = "\n".join(dump)
    for secret in secrets:
        assert secret not in text
        assert secret.lower() not in text.lower()
    assert share.code_hash in text  # the dump did read the sharing tables


def test_the_recipient_gets_the_link_by_email_but_never_the_pin(sharer, patient, ct):
    create(sharer, [ct], pin="739154", recipient_email="smith@example.org")
    share = Share.objects.get(owner=patient)
    _code, link, _page = revealed(sharer, share)
    [message] = mail.outbox
    assert message.to == ["smith@example.org"]
    assert link in message.body
    assert "739154" not in message.body and "739154" not in message.subject
    assert "PIN" in message.body  # told that one is needed, and that the patient gives it
    assert AccessEvent.objects.filter(share=share, kind=Event.EMAILED).exists()


def test_a_patient_cannot_share_another_patients_study(sharer, ct, other_study):
    response = create(sharer, [other_study])
    assert response.status_code == 200
    assert "no longer in your vault" in response.content.decode()
    assert not Share.objects.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"expiry": "custom", "expiry_date": ""}, "Please pick the last day"),
        ({"expiry": "custom", "expiry_date": "2999-01-01"}, "at most one year"),
        ({"pin": "12345"}, "exactly 6 digits"),
        ({"label": ""}, "who this is for"),
    ],
)
def test_the_form_explains_what_to_fix(sharer, ct, fields, message):
    response = create(sharer, [ct], **fields)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Share.objects.exists()


def test_a_custom_date_lasts_to_the_end_of_that_day(sharer, patient, ct):
    day = timezone.localdate() + timedelta(days=100)
    create(sharer, [ct], expiry="custom", expiry_date=day.isoformat())
    share = Share.objects.get(owner=patient)
    assert timezone.localtime(share.expires_at).date() == day + timedelta(days=1)


def test_the_shares_page_shows_status_scope_expiry_and_last_use(sharer, patient, ct, mr):
    _active, _ = make_share(patient, [ct], label="Dr. Active")
    expired, _ = make_share(patient, [mr], label="Dr. Expired")
    Share.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    revoked, _ = make_share(patient, [ct], label="Dr. Revoked")
    Share.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    locked, _ = make_share(patient, [ct], label="Dr. Locked")
    Share.objects.filter(pk=locked.pk).update(locked_at=timezone.now())

    page = sharer.get(reverse("sharing:list")).content.decode()
    for label, status in [
        ("Dr. Active", "Active"),
        ("Dr. Expired", "Expired"),
        ("Dr. Revoked", "Stopped"),
        ("Dr. Locked", "Locked"),
    ]:
        assert re.search(rf"{label}</a></h2>\s*<span class=\"share-status[^\"]*\">{status}<", page)
    assert ct.title in page and "Not yet" in page
    assert page.count("Stop sharing</button>") == 1  # only the active one
    # The expiry is in the log once, however often the page is seen.
    sharer.get(reverse("sharing:list"))
    assert AccessEvent.objects.filter(share=expired, kind=Event.EXPIRED).count() == 1


def test_revoking_is_logged_and_takes_effect(sharer, patient, ct, doctor):
    share, plain = make_share(patient, [ct])
    response = sharer.post(reverse("sharing:revoke", args=[share.pk]))
    assert response.status_code == 302
    share.refresh_from_db()
    assert share.revoked_at is not None
    event = AccessEvent.objects.get(share=share, kind=Event.REVOKED)
    assert event.ip == "127.0.0.1"
    assert open_with_code(doctor, plain.code).status_code == 403


@pytest.mark.parametrize(
    "name", ["sharing:detail", "sharing:created", "sharing:card", "sharing:revoke", "sharing:hide"]
)
def test_every_share_page_is_the_owners_alone(name, patient, ct, other_patient, doctor):
    share, plain = make_share(patient, [ct])
    url = reverse(name, args=[share.pk])
    method = "post" if name in {"sharing:revoke", "sharing:hide"} else "get"

    stranger = Client()
    response = getattr(stranger, method)(url)
    assert response.status_code == 302 and "/accounts/login/" in response.url

    wait_for_fresh_totp_window()
    someone_else = Client()
    login_with_totp(someone_else, other_patient)
    reauthenticate(someone_else)
    assert getattr(someone_else, method)(url).status_code == 404

    # A doctor holding this very share is still no patient.
    open_with_code(doctor, plain.code)
    response = getattr(doctor, method)(url)
    assert response.status_code == 302 and "/accounts/login/" in response.url

    share.refresh_from_db()
    assert share.revoked_at is None


def test_the_list_and_create_pages_need_a_patient(client):
    for name in ["sharing:list", "sharing:create"]:
        response = client.get(reverse(name))
        assert response.status_code == 302 and "/accounts/login/" in response.url


def test_creating_a_share_and_revealing_its_code_ask_for_recent_reauthentication(
    patient_client, patient, ct
):
    response = patient_client.get(reverse("sharing:create"))
    assert response.status_code == 302 and "reauthenticate" in response.url
    assert create(patient_client, [ct]).status_code == 302
    assert not Share.objects.exists()
    share, _ = make_share(patient, [ct])
    for name in ["sharing:created", "sharing:card"]:
        response = patient_client.get(reverse(name, args=[share.pk]))
        assert response.status_code == 302 and "reauthenticate" in response.url
