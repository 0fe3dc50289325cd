"""The viewer on a real S3 server: a series comes from its bundle, in ranged requests that the
object store answers, and every image shows pydicom's pixel values."""

from urllib.parse import urlsplit

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from tests.browser.test_viewer_browser import (
    assert_pixels_match,
    each_image_by_keyboard,
    expected_stats,
    sign_in,
    wait_until_series_loaded,
)
from tests.support.vaultdata import add_one_image_series, longest_stack

pytestmark = [pytest.mark.browser, pytest.mark.s3, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _test_hook(settings):
    settings.PHR_VIEWER_TEST_HOOK = True


def test_a_stack_comes_from_its_bundle_in_ranges_with_the_right_pixels(
    s3_storage, page, client, patient, cd_studies, page_log, tmp_path
):
    series = longest_stack(cd_studies)
    lone = add_one_image_series(series, tmp_path)
    instances = list(series.instances.order_by("slice_position", "instance_number", "created_at"))
    ranged, whole_files = [], []

    def note(request):
        if any(instance.storage_key in request.url for instance in instances):
            whole_files.append(request.url)
        elif ".bundle" in request.url and request.method == "GET":
            ranged.append(request.headers.get("range"))

    page.on("request", note)
    sign_in(page, client, patient)
    page.goto(reverse("viewer:study", args=[series.study.id]))
    page.locator(f'[data-series-id="{series.id}"]').click()
    wait_until_series_loaded(page, str(series.id), page_log)

    progress = page.evaluate(
        "id => window.viewerTestHook.progress().find(p => p.id === id)", str(series.id)
    )
    assert progress["failed"] == 0 and progress["loaded"] == len(instances)
    # No batch failed over to file-by-file fetching, and the series too small for a bundle,
    # whose file comes whole, loaded as well.
    assert not [line for line in page_log if "couldn't be fetched" in line], page_log
    wait_until_series_loaded(page, str(lone.id), page_log)
    assert ranged and all(value and value.startswith("bytes=") for value in ranged)
    assert urlsplit(page.url).netloc != urlsplit(default_storage.url("probe")).netloc
    # At most the image on screen came as a file of its own, before the series was batched
    # (the study's smaller series do come file by file).
    assert len(whole_files) <= 1, whole_files
    # Each image shows its own file's pixels, so the ranges were cut where the files are.
    for index, shown in each_image_by_keyboard(page, len(instances), page_log=page_log):
        assert shown["seriesId"] == str(series.id)
        instance = instances[index]
        local = tmp_path / f"{index}.dcm"
        with default_storage.open(instance.storage_key, "rb") as stored:
            local.write_bytes(stored.read())
        assert_pixels_match(f"image {index}", shown, expected_stats(local))


# Runs the viewer's fetch worker on one batch; resolves with each file's SHA-256, in order.
FETCH_BATCH = """async ({ ids, filesUrl }) => {
  const worker = new Worker(document.getElementById('viewer-app').dataset.fetcher,
                            { type: 'module' });
  const files = [];
  const finished = await new Promise((resolve) => {
    worker.onmessage = ({ data }) => {
      if (data.buffer) files[data.index] = data.buffer;
      else resolve(data);
    };
    worker.postMessage({ batch: 1, filesUrl, ids });
  });
  worker.terminate();
  const hex = async (buffer) => [...new Uint8Array(await crypto.subtle.digest('SHA-256', buffer))]
    .map((byte) => byte.toString(16).padStart(2, '0')).join('');
  return { finished, hashes: await Promise.all(files.map(hex)) };
}"""


def test_a_batch_mixing_a_bundle_and_a_lone_file_arrives_whole(
    s3_storage, page, client, patient, cd_studies, tmp_path
):
    # The viewer's batches mix series when the study has several: here files of a bundled
    # series around the file of a series too small for a bundle, which the answer lists whole.
    series = longest_stack(cd_studies)
    lone = add_one_image_series(series, tmp_path).instances.get()
    stack = list(series.instances.order_by("slice_position", "instance_number", "created_at"))
    wanted = [*stack[:3], lone, *stack[3:]]
    sign_in(page, client, patient)
    page.goto(reverse("viewer:study", args=[series.study.id]))  # its CSP lets it reach the store

    result = page.evaluate(
        FETCH_BATCH,
        {
            "ids": [str(instance.id) for instance in wanted],
            "filesUrl": reverse("viewer:study_files", args=[series.study.id]),
        },
    )

    assert result["finished"] == {"batch": 1, "done": True}
    assert result["hashes"] == [instance.sha256 for instance in wanted]
