"""phr.lib.http: the small HTTP helpers every app uses."""

from django.urls import reverse

from phr.lib.http import content_disposition, url_if_installed


def test_a_page_of_an_installed_app_has_its_url():
    assert url_if_installed("vault:home") == reverse("vault:home")


def test_a_page_of_an_app_the_site_runs_without_has_none():
    assert url_if_installed("no-such-app:study", "x") is None


def test_a_file_name_is_kept_for_modern_browsers_and_made_ascii_for_old_ones():
    header = content_disposition("Scan—Jörg.pdf", inline=False)
    assert header.startswith("attachment; ")
    assert "filename*=UTF-8''Scan%E2%80%94J%C3%B6rg.pdf" in header
