"""The viewer behind a real nginx running the site file we ship, with secure links on: the study's
list brings every image's signed link, and Chromium loads the whole stack from nginx without a
single batch request to Django."""

import time
import uuid
from urllib.parse import urlsplit

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from phr.vault.models import Instance
from tests.browser.test_viewer_browser import each_image_by_keyboard, wait_until_series_loaded
from tests.support import nginx as nginx_support
from tests.support.vaultdata import longest_stack

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    # nginx serves the files from the vault's folder: a file-system vault, even in the
    # production-like run.
    pytest.mark.usefixtures("file_system_storage"),
]

SECRET = "browser-test-secure-link-secret-0123456789"
STATIC_SOURCES = nginx_support.ROOT / "static"


@pytest.fixture
def site(settings, tmp_path, live_server):
    settings.PHR_SECURE_LINK_PREFIX = "/vault-files/"
    settings.PHR_SECURE_LINK_SECRET = SECRET
    settings.PHR_VIEWER_TEST_HOOK = True
    upstream = urlsplit(live_server.url).netloc
    port = nginx_support.free_port()
    server = nginx_support.site_server(
        port,
        media_root=tmp_path / "media",
        # The tests' pages name their scripts without hashes, straight from the sources.
        static_root=STATIC_SOURCES,
        upstream=upstream,
        secret=SECRET,
    )
    running = nginx_support.Nginx(tmp_path / "nginx", [server], port).start()
    yield running
    running.stop()


@pytest.fixture
def viewer_behind_nginx(browser, site, client, patient):
    """`open_series(series)`: the patient's viewer through nginx, the series clicked and loaded
    (every image loaded or failed); returns the paths the page requested, its errors, the page."""
    context = browser.new_context(base_url=site.origin)
    client.force_login(patient)
    cookie = {"name": "sessionid", "value": client.cookies["sessionid"].value, "url": site.origin}
    context.add_cookies([cookie])

    def open_series(series):
        page = context.new_page()
        requested, problems = [], []
        page.on("request", lambda request: requested.append(urlsplit(request.url).path))
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(reverse("viewer:study", args=[series.study.id]))
        page.locator(f'[data-series-id="{series.id}"]').click()
        wait_until_series_loaded(page, str(series.id), problems, or_failed=True)
        return requested, problems, page

    yield open_series
    context.close()


def progress_of(page, series) -> dict:
    return page.evaluate(
        "id => window.viewerTestHook.progress().find(p => p.id === id)", str(series.id)
    )


def test_the_whole_stack_comes_from_nginx_by_secure_links(viewer_behind_nginx, cd_studies):
    series = longest_stack(cd_studies)

    paths, problems, page = viewer_behind_nginx(series)

    assert not problems
    assert progress_of(page, series)["loaded"] == series.num_instances
    linked = [path for path in paths if path.startswith("/vault-files/")]
    assert len(linked) >= series.num_instances - 1  # the first image may come by its own URL
    assert not [path for path in paths if path.endswith("/files/")]  # no batch request


def test_a_file_nginx_cannot_serve_fails_alone_and_the_rest_still_load(
    viewer_behind_nginx, cd_studies
):
    # One file of the stack lost from the disk (what check_vault would report): its secure link
    # answers 404, which fails its batch. The batch's other files are then fetched one by one,
    # and only the lost one is marked as failed.
    series = longest_stack(cd_studies)
    lost = series.instances.order_by("-instance_number").first()
    default_storage.delete(lost.storage_key)

    paths, _problems, page = viewer_behind_nginx(series)

    progress = progress_of(page, series)
    assert progress["failed"] == 1
    assert progress["loaded"] == series.num_instances - 1
    # The fallback asked for the lost file by its own URL, after its link had failed.
    assert reverse("viewer:instance", args=[lost.id]) in paths
    # Scrolled to, it says it couldn't be fetched (not that it was corrupt), and why.
    messages = [
        shown["error"]
        for _index, shown in each_image_by_keyboard(page, series.num_instances, drawn=False)
    ]
    lost_message = [text for text in messages if text]
    assert len(lost_message) == 1, messages
    assert "its file couldn't be fetched (the server answered 404)" in lost_message[0]


def test_links_that_have_expired_are_asked_for_again_in_batches(
    viewer_behind_nginx, cd_studies, monkeypatch
):
    # The list's links have expired by the time the stack loads (a series opened long after the
    # page, or a slow link): nginx answers 410 and the viewer asks Django for fresh links, a
    # batch at a time, rather than failing or falling back to one request per file.
    from viewer import catalogue, securelink

    listed = catalogue.study_images

    def with_expired_links(*args, **kwargs):
        data = listed(*args, **kwargs)
        keys = dict(Instance.objects.values_list("id", "storage_key"))
        an_hour_ago = time.time() - 3600
        for one in data["series"]:
            for image in one["images"]:
                if "link" in image:
                    key = keys[uuid.UUID(image["id"])]
                    image["link"] = securelink.url(key, now=an_hour_ago)
        return data

    monkeypatch.setattr(catalogue, "study_images", with_expired_links)
    series = longest_stack(cd_studies)

    paths, problems, page = viewer_behind_nginx(series)

    assert not problems
    progress = progress_of(page, series)
    assert (progress["loaded"], progress["failed"]) == (series.num_instances, 0)
    assert [path for path in paths if path.endswith("/files/")]  # fresh links, by batch
    one_by_one = {reverse("viewer:instance", args=[one.id]) for one in series.instances.all()}
    # The first image may come by its own URL (the page preloads it); no other one does.
    assert len(one_by_one.intersection(paths)) <= 1
