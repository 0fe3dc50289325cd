"""The whole sharing journey in real Chromium: the patient makes a share in one browser, a
doctor opens the magic link in a second, and another doctor types the code and PIN in a third.
Each browser context has its own cookies, as three different computers would."""

import re

import pytest
from django.core.cache import cache
from pydicom.data import get_testdata_file

from phr.sharing.models import AccessEvent, Event, Share
from tests.conftest import login_with_totp, wait_for_fresh_totp_window
from tests.factories import PASSWORD
from tests.support.vaultdata import ingest_path

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()  # the database cache survives between transactional tests
    yield
    cache.clear()


def stored(owner, name):
    result = ingest_path(owner, get_testdata_file(name))
    assert result.outcome == "stored", result.message
    return result.study


def new_page(browser, live_server, viewport=PHONE):
    context = browser.new_context(base_url=live_server.url, viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    return context, page, problems


def signed_in_patient(browser, live_server, patient, client):
    """Log in over HTTP with the real TOTP flow and re-authenticate (creating a share asks for
    it), then hand the session cookie to a fresh browser context."""
    wait_for_fresh_totp_window()
    login_with_totp(client, patient)
    client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    context, page, problems = new_page(browser, live_server)
    cookie = client.cookies["sessionid"].value
    context.add_cookies([{"name": "sessionid", "value": cookie, "url": live_server.url}])
    return context, page, problems


def fits_the_phone(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_patient_shares_and_two_doctors_open_it_by_link_and_by_code(
    browser, live_server, patient, client
):
    ct = stored(patient, "CT_small.dcm")
    mr = stored(patient, "MR_small.dcm")

    # --- the patient, on a phone ---------------------------------------------------------
    patient_ctx, page, patient_problems = signed_in_patient(browser, live_server, patient, client)
    page.goto("/shares/")
    page.get_by_role("link", name="Share with a doctor").click()
    page.locator(f'input[value="{ct.pk}"]').check()
    page.locator("#tick-priors").click()  # the MR is another kind of scan: nothing added
    assert "no other studies" in page.locator("#tick-priors-result").inner_text()
    assert not page.locator(f'input[value="{mr.pk}"]').is_checked()
    page.get_by_label("Who is it for?").fill("Dr. Smith, Mayo Clinic")
    assert page.locator("#expiry-date-field").is_hidden()
    page.get_by_label("30 days").check()
    page.get_by_label("PIN (optional)").fill("739154")
    page.get_by_label("Look and download (ZIP)").check()
    assert fits_the_phone(page)
    page.get_by_role("button", name="Create the code and link").click()

    page.get_by_role("heading", name=re.compile("Ready: give this to")).wait_for()
    code = page.locator("#access-code").inner_text()
    link = page.locator("#magic-link").inner_text()
    assert re.fullmatch(r"[0-9A-Z]{4}(-[0-9A-Z]{4}){3}", code)
    assert re.fullmatch(re.escape(live_server.url) + r"/s/[A-Za-z0-9_-]{43}", link)
    assert page.locator(".share-qr svg").is_visible()
    assert fits_the_phone(page)
    page.get_by_role("link", name="Printable card").click()
    assert page.locator(".access-card-code").inner_text() == code
    assert page.locator(".access-card svg").is_visible()
    share = Share.objects.get(owner=patient)

    # --- a doctor opens the magic link ---------------------------------------------------
    doctor_ctx, doctor, doctor_problems = new_page(browser, live_server)
    doctor.goto(link)
    doctor.get_by_role("heading", name="Open the scans a patient shared with you?").wait_for()
    assert not AccessEvent.objects.filter(kind=Event.OPENED).exists()  # GET did nothing
    doctor.get_by_label("PIN from the patient").fill("739154")
    doctor.get_by_role("button", name="Open the scans").click()
    doctor.get_by_role("heading", name="Scans shared with you").wait_for()
    assert doctor.url == f"{live_server.url}/shared/"  # no token left in the address bar
    titles = doctor.locator(".study-card-title").all_inner_texts()
    assert titles == [ct.title]
    assert fits_the_phone(doctor)
    doctor.locator(".study-card-title a").click()
    doctor.get_by_role("link", name="Download (ZIP with DICOMDIR)").wait_for()
    # Another of the patient's studies, typed into the address bar: not there.
    missing = doctor.goto(f"/shared/studies/{mr.pk}/")
    assert missing.status == 404

    # --- another doctor types the code and PIN -------------------------------------------
    typed_ctx, typed, typed_problems = new_page(
        browser, live_server, {"width": 1280, "height": 800}
    )
    typed.goto("/")
    typed.get_by_role("link", name=re.compile("doctor with an access code")).click()
    typed.get_by_label("Access code").fill(code.lower().replace("-", " "))
    typed.get_by_label("PIN, if the patient gave you one").fill("739154")
    typed.get_by_role("button", name="Open the scans").click()
    typed.get_by_role("heading", name="Scans shared with you").wait_for()
    assert typed.locator(".study-card-title").all_inner_texts() == [ct.title]

    # --- the patient sees both, and stops the share --------------------------------------
    page.goto(f"/shares/{share.pk}/")
    log = page.locator(".access-log").inner_text()
    assert log.count("Opened") == 2 and "Looked at a study" in log
    page.get_by_role("button", name="Stop sharing now").click()
    page.get_by_text("has stopped").wait_for()

    doctor.goto("/shared/")
    doctor.get_by_role("heading", name="This share has ended").wait_for()
    typed.reload()
    typed.get_by_role("heading", name="This share has ended").wait_for()

    for problems in (patient_problems, doctor_problems, typed_problems):
        assert not [p for p in problems if "Content Security Policy" in p], problems
    for context in (patient_ctx, doctor_ctx, typed_ctx):
        context.close()


def test_the_secret_link_is_never_sent_in_a_referer(browser, live_server, patient):
    """Every request the link's page and the PIN page make (its CSS, scripts, images, the form)
    carries at most the site's origin in Referer, never the path with the token; the PIN form
    still passes the CSRF check, which wants an Origin."""
    from tests.sharing.conftest import make_share

    scan = stored(patient, "CT_small.dcm")
    _share, secrets = make_share(patient, [scan], pin="739154")
    context, doctor, _problems = new_page(browser, live_server)
    referers = []
    doctor.on("request", lambda request: referers.append(request.headers.get("referer") or ""))
    try:
        doctor.goto(f"/s/{secrets.token}")
        doctor.get_by_label("PIN from the patient").fill("739154")
        doctor.get_by_role("button", name="Open the scans").click()
        doctor.locator(".study-card-title a").wait_for()
    finally:
        context.close()
    assert len(referers) > 3
    assert not [r for r in referers if secrets.token in r or "/s/" in r], referers
