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
