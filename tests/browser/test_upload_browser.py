"""A patient adds pydicom's real DICOMDIR CD folder through the Add studies page in Chromium."""

import pytest

from phr.vault.models import Instance, Study
from tests.conftest import login_with_totp, wait_for_fresh_totp_window
from tests.support.vaultdata import dicomdir_tree

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in(page, patient, client):
    """Log in over HTTP with the real TOTP flow, then hand the session cookie to the browser."""
    wait_for_fresh_totp_window()
    login_with_totp(client, patient)
    cookie = client.cookies["sessionid"]
    page.context.add_cookies(
        [{"name": "sessionid", "value": cookie.value, "url": page.url or "http://localhost"}]
    )


def test_uploading_the_cd_folder_shows_progress_results_and_a_summary(
    page, live_server, patient, client
):
    page.goto("/")
    sign_in(page, patient, client)
    page.goto("/vault/add/")
    page.locator("#pick-folder").set_input_files(str(dicomdir_tree()))

    page.get_by_role("heading", name="What's in your vault now").wait_for(timeout=60_000)
    assert page.locator("#progress-title").inner_text().startswith("Finished")
    summary = page.locator("#summary-list").inner_text()
    assert "series" in summary and "new" in summary
    results = page.locator("#file-results li")
    assert results.count() > 80
    assert page.locator("#file-results li.result-stored").count() == Instance.objects.count()
    assert page.locator("#file-results li.result-skipped").count() >= 1  # the DICOMDIR, READMEs
    assert Study.objects.filter(owner=patient).count() == page.locator("#summary-list > li").count()
    progress = page.locator("#progress-bar")
    assert progress.get_attribute("value") == progress.get_attribute("max")

    # Nothing failed to send: there is nothing to try again.
    assert not page.locator("#retry-button").is_visible()
    # The list's numbers (past 80 here) are whole, not clipped by the list's own margin.
    assert page.evaluate(
        """() => {
          const list = document.getElementById('file-results');
          const item = list.lastElementChild;
          const style = getComputedStyle(list);
          if (style.listStylePosition === 'inside') return true;
          const ctx = document.createElement('canvas').getContext('2d');
          ctx.font = getComputedStyle(item).font;
          const marker = ctx.measureText(list.children.length + '. ').width;
          return marker <= parseFloat(style.paddingLeft);
        }"""
    ), "the numbers of the file list are cut off"


def test_several_label_warnings_can_be_kept_at_once(page, live_server, patient, client):
    # The CD's studies are labelled for other people than this patient: one warning each.
    patient.full_name = "Zebedee Quux"
    patient.save(update_fields=["full_name"])
    page.goto("/")
    sign_in(page, patient, client)
    page.goto("/vault/add/")
    page.locator("#pick-folder").set_input_files(str(dicomdir_tree()))
    page.get_by_role("heading", name="What's in your vault now").wait_for(timeout=60_000)
    warnings = page.locator(".label-warning")
    assert warnings.count() > 1

    page.get_by_role("button", name="Keep all").click()

    assert page.locator(".label-warning").count() == 0
    assert Study.objects.filter(owner=patient).count() == page.locator("#summary-list > li").count()
