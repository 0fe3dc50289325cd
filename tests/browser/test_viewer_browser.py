"""The viewer in real Chromium: scroll, window/level, measurement, layouts, failures and
screenshots. Every file's pixel values are compared with pydicom's in test_viewer_pixels.py.

Pixel statistics here (for stacks loaded in the background) compare the viewer's decoded image,
read through window.viewerTestHook (exposed only when PHR_VIEWER_TEST_HOOK is on), with
pydicom's decode after the modality LUT: lossless files, so exactly.
"""

import os
from collections import Counter
from urllib.parse import urlsplit

import numpy as np
import pydicom
import pytest
from django.urls import reverse
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut
from pydicom.uid import generate_uid

from tests.conftest import login_with_totp, wait_for_fresh_totp_window
from tests.support.vaultdata import add_one_image_series, ingest_path, longest_stack

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TIMEOUT = 30_000
SCREENSHOTS = "/tmp/viewer-screens"


@pytest.fixture(autouse=True)
def _test_hook(settings):
    settings.PHR_VIEWER_TEST_HOOK = True


def wait_until_series_loaded(page, series_id, page_log=(), *, or_failed=False):
    """Wait for every image of the series to load in the background (or to fail, if
    `or_failed`); on a timeout, say which images didn't and what the page said."""
    try:
        page.wait_for_function(
            # `?.`: called soon after the page opened, the viewer may not have started yet.
            "([id, orFailed]) => window.viewerTestHook?.progress().some(p => p.id === id"
            " && p.loaded + (orFailed ? p.failed : 0) === p.total)",
            arg=[series_id, or_failed],
            timeout=TIMEOUT,
        )
    except PlaywrightTimeoutError:
        waiting = page.evaluate("id => window.viewerTestHook?.waiting(id)", series_id)
        pytest.fail(f"images never loaded: {waiting}; the page said: {page_log[-40:]}")


def sign_in(page, client, user, *, with_totp=False):
    """Give the browser a logged-in session cookie (the real TOTP flow when asked)."""
    if page.url in ("", "about:blank"):
        page.goto("/healthz")
    if with_totp:
        wait_for_fresh_totp_window()
        login_with_totp(client, user)
    else:
        client.force_login(user)
    cookie = client.cookies["sessionid"]
    page.context.add_cookies([{"name": "sessionid", "value": cookie.value, "url": page.url}])


def open_viewer(page, study):
    page.goto(reverse("viewer:study", args=[study.id]))
    return wait_until_shown(page)


def wait_until_shown(page, viewport=0):
    page.wait_for_function(
        "i => window.viewerTestHook && window.viewerTestHook.state(i).ready",
        arg=viewport,
        timeout=TIMEOUT,
    )
    return state(page, viewport)


def state(page, viewport=0):
    return page.evaluate("i => window.viewerTestHook.state(i)", viewport)


def expected_stats(path, frame=0):
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[frame]
    if ds.get("SamplesPerPixel", 1) == 1:
        pixels = apply_modality_lut(pixels, ds)
    pixels = np.asarray(pixels, dtype=np.float64)
    return {"min": pixels.min(), "max": pixels.max(), "mean": pixels.mean()}


def assert_pixels_match(name, shown, expected):
    """Lossless images (the only ones these tests compare by statistics): exactly pydicom's."""
    stats = shown["stats"]
    assert stats["min"] == expected["min"] and stats["max"] == expected["max"], (name, stats)
    assert abs(stats["mean"] - expected["mean"]) <= 1e-6 * max(1, abs(expected["mean"])), name


# --- interaction -----------------------------------------------------------------------------


def viewport_centre(page, index=0):
    box = page.locator(f"#viewport-{index}").bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def wait_for_index(page, index, viewport=0):
    page.wait_for_function(
        "([v, n]) => window.viewerTestHook.state(v).index === n",
        arg=[viewport, index],
        timeout=TIMEOUT,
    )


def each_image_by_keyboard(page, count, *, drawn=True, page_log=()):
    """Step viewport 0 through its series with the keyboard, from the first image (Home, then
    ArrowDown). Yields each index with the viewer's state once that image is on screen (once it
    is the current one, if not `drawn`: an image that failed is never drawn)."""
    page.locator("#viewport-0").focus()
    page.keyboard.press("Home")
    for index in range(count):
        if index:
            page.keyboard.press("ArrowDown")
        try:
            shown = page.wait_for_function(
                "([i, drawn]) => { const s = window.viewerTestHook.state(0);"
                " return s.index === i && (s.ready || !drawn) && s; }",
                arg=[index, drawn],
                timeout=TIMEOUT,
            )
        except PlaywrightTimeoutError:
            pytest.fail(
                f"image {index} never shown: {state(page)}; the page said: {page_log[-40:]}"
            )
        yield index, shown.json_value()


def test_patient_scrolls_a_stack_with_wheel_keys_and_slider(
    page, client, cd_studies, patient, page_log
):
    series = longest_stack(cd_studies)
    sign_in(page, client, patient, with_totp=True)  # the real password + TOTP login, once
    page.goto(reverse("viewer:study", args=[series.study.id]))
    # The strip is there before the viewer has started (and its test hook with it): a series
    # picked that early is the one shown first.
    page.locator(f'[data-series-id="{series.id}"]').click()
    page.wait_for_function(
        "id => { const s = window.viewerTestHook?.state(0);"
        " return s?.ready && s.seriesId === id; }",
        arg=str(series.id),
        timeout=TIMEOUT,
    )
    first = state(page)
    assert first["index"] == 0 and first["count"] == series.num_instances

    x, y = viewport_centre(page)
    page.mouse.move(x, y)
    page.mouse.wheel(0, 120)
    page.wait_for_function("() => window.viewerTestHook.state(0).index > 0", timeout=TIMEOUT)
    after_wheel = state(page)["index"]

    page.keyboard.press("ArrowDown")
    wait_for_index(page, after_wheel + 1)
    page.keyboard.press("Home")
    wait_for_index(page, 0)

    page.locator("#slider").fill(str(series.num_instances - 1))
    wait_for_index(page, series.num_instances - 1)
    assert page.locator("#image-count").inner_text() == (
        f"{series.num_instances} / {series.num_instances}"
    )
    # The whole series streams in the background; its progress bar fills.
    wait_until_series_loaded(page, str(series.id), page_log)
    assert "Im " in page.locator(".vw-cell.is-active .vw-ov-tr").inner_text()


def test_a_series_picked_while_the_first_still_loads_is_the_one_drawn(
    page, client, ct_study, patient, tmp_path
):
    first = ct_study.series.get()
    picked = add_one_image_series(first, tmp_path)
    held_instance = first.instances.get()
    held = []  # the first series' image, kept from the browser until the picked one is drawn
    page.route(
        lambda url: str(held_instance.id) in url and "tags" not in url,
        lambda route: held.append(route),
    )
    sign_in(page, client, patient)
    page.goto(reverse("viewer:study", args=[ct_study.id]))
    # The viewer has started and is showing the first series, whose image hasn't arrived.
    page.wait_for_function("() => window.viewerTestHook", timeout=TIMEOUT)
    assert held and state(page)["seriesId"] == str(first.id)

    page.locator(f'[data-series-id="{picked.id}"]').click()
    page.wait_for_function(
        "id => { const s = window.viewerTestHook.state(0); return s.ready && s.seriesId === id; }",
        arg=str(picked.id),
        timeout=TIMEOUT,
    )
    # Now the first series' image arrives, late. Cornerstone's CPU renderer (a phone without
    # WebGL, or this headless browser) draws it, as it checks only the image's index.
    for route in held:
        route.continue_()
    page.wait_for_function(
        "id => window.viewerTestHook.progress().some(p => p.id === id && p.loaded === 1)",
        arg=str(first.id),
        timeout=TIMEOUT,
    )

    # The viewer draws the picked series' image again: what is on screen is what the
    # overlay and the strip say.
    shown = page.wait_for_function(
        "id => { const s = window.viewerTestHook.state(0);"
        " return s.ready && s.seriesId === id && s; }",
        arg=str(picked.id),
        timeout=TIMEOUT,
    ).json_value()
    assert shown["index"] == 0 and shown["error"] is None


def stack_of_copies(patient, tmp_path, count):
    """A study of one series: `count` copies of CT_small under new UIDs, ingested."""
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    template.StudyInstanceUID, template.SeriesInstanceUID = generate_uid(), generate_uid()
    for number in range(1, count + 1):
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        template.InstanceNumber = number
        template.ImagePositionPatient = [0, 0, number]
        path = tmp_path / f"{number}.dcm"
        template.save_as(path, enforce_file_format=True)
        result = ingest_path(patient, path)
        assert result.outcome == "stored", result.message
    return result.instance.series


def test_scrolling_before_the_first_image_arrives_still_loads_the_whole_stack(
    page, client, patient, tmp_path, page_log
):
    series = stack_of_copies(patient, tmp_path, 6)
    first = series.instances.get(instance_number=1)
    held = []  # the first image, kept from the browser until the doctor has scrolled on
    page.route(
        lambda url: f"/instances/{first.id}/" in url and "tags" not in url,
        lambda route: held.append(route),
    )
    sign_in(page, client, patient)
    page.goto(reverse("viewer:study", args=[series.study.id]))
    page.wait_for_function("() => window.viewerTestHook", timeout=TIMEOUT)
    assert held
    page.locator("#viewport-0").focus()
    page.keyboard.press("ArrowDown")
    page.wait_for_function(
        "() => { const s = window.viewerTestHook.state(0); return s.ready && s.index === 1; }",
        timeout=TIMEOUT,
    )

    for route in held:
        route.continue_()

    # Cornerstone's CPU renderer never settles the draw of an image scrolled past before it
    # arrived: background loading mustn't wait for that draw.
    wait_until_series_loaded(page, str(series.id), page_log)


def test_a_file_that_failed_to_arrive_is_asked_for_again(
    page, client, cd_studies, patient, page_log
):
    series = longest_stack(cd_studies)
    instances = list(series.instances.order_by("slice_position", "instance_number", "created_at"))
    # The image shown first loses its connection once; the next one meets a 503 once (a proxy
    # restarting); the last one's server answers 503 for good.
    dropped, busy, lost = instances[0], instances[1], instances[-1]
    asked = Counter()

    def answer(route):
        instance = next(i for i in instances if f"/instances/{i.id}/" in route.request.url)
        asked[instance] += 1
        first_time = asked[instance] == 1
        if instance == dropped and first_time:
            route.abort("connectionreset")
        elif (instance == busy and first_time) or instance == lost:
            route.fulfill(status=503, body="Service Unavailable")
        else:
            route.continue_()

    files_url = reverse("viewer:study_files", args=[series.study.id])
    # Batches fail too, so that every file comes by its own URL, where the retries are.
    page.route(lambda url: urlsplit(url).path == files_url, lambda route: route.abort())
    page.route(
        lambda url: any(f"/instances/{i.id}/" in url for i in instances) and "tags" not in url,
        answer,
    )
    sign_in(page, client, patient)
    page.goto(reverse("viewer:study", args=[series.study.id]))
    page.locator(f'[data-series-id="{series.id}"]').click()
    wait_until_series_loaded(page, str(series.id), page_log, or_failed=True)

    progress = page.evaluate(
        "id => window.viewerTestHook.progress().find(p => p.id === id)", str(series.id)
    )
    assert (progress["loaded"], progress["failed"]) == (len(instances) - 1, 1), page_log[-20:]
    # Asked twice each; the lost file three times (two retries), then given up on.
    assert asked[dropped] == 2 and asked[busy] == 2, asked
    assert asked[lost] == 3, asked
    images = list(each_image_by_keyboard(page, len(instances), drawn=False, page_log=page_log))
    assert [shown["error"] for _index, shown in images[:-1]] == [None] * (len(instances) - 1)
    assert "its file couldn't be fetched (the server answered 503)" in images[-1][1]["error"]


def test_window_level_drag_presets_and_a_length_in_mm(page, client, ct_study, patient):
    sign_in(page, client, patient)
    before = open_viewer(page, ct_study)
    x, y = viewport_centre(page)

    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 80, y + 50, steps=8)
    page.mouse.up()
    dragged = state(page)["voi"]
    assert dragged != before["voi"]
    assert abs(dragged["width"] - before["voi"]["width"]) > 1

    page.select_option("#preset", "1500,-600")
    lung = state(page)["voi"]
    assert round(lung["width"]) == 1500 and round(lung["center"]) == -600
    assert "W 1500 L -600" in page.locator(".vw-cell.is-active .vw-ov-bl").inner_text()

    page.locator('[data-tool="Length"]').click()
    page.mouse.move(x - 100, y)
    page.mouse.down()
    page.mouse.move(x + 100, y, steps=10)
    page.mouse.up()
    page.wait_for_function(
        "() => window.viewerTestHook.measurements().some(m => m.value > 0)", timeout=TIMEOUT
    )
    length = page.evaluate("() => window.viewerTestHook.measurements()")[0]
    assert length["unit"] == "mm"
    # 200 screen px across a 128 px image of 0.66 mm pixels, drawn larger than life.
    assert 5 < length["value"] < 128 * 0.661468


def test_an_image_that_cannot_be_decoded_says_so_and_the_rest_works(
    page, client, patient, tmp_path
):
    good = ingest_path(patient, get_testdata_file("CT_small.dcm"))
    broken = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    broken.SOPInstanceUID = broken.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    broken.InstanceNumber = 99
    broken.ImagePositionPatient = [*broken.ImagePositionPatient[:2], 500]
    # JPEG 2000 that isn't: the file parses, its pixels can't decode.
    broken.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000
    broken.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f\xff\x51" + b"\0" * 64])
    broken["PixelData"].VR = "OB"
    path = tmp_path / "broken.dcm"
    broken.save_as(path, enforce_file_format=True)
    assert ingest_path(patient, path).outcome == "stored"
    sign_in(page, client, patient)

    shown = open_viewer(page, good.study)
    assert shown["count"] == 2 and shown["error"] is None
    page.locator("#viewport-0").focus()
    page.keyboard.press("End")
    message = page.locator(".vw-cell.is-active .vw-message")
    message.wait_for(state="visible", timeout=TIMEOUT)
    assert "can't be shown: its file couldn't be decoded" in message.inner_text()
    page.keyboard.press("Home")
    page.wait_for_function(
        "() => { const s = window.viewerTestHook.state(0); return s.index === 0 && !s.error; }",
        timeout=TIMEOUT,
    )
    assert page.locator(".vw-cell.is-active .vw-message").is_hidden()


def test_another_patients_study_is_a_clear_404_page(page, client, ct_study, other_patient):
    sign_in(page, client, other_patient)
    response = page.goto(reverse("viewer:study", args=[ct_study.id]))
    assert response.status == 404
    assert page.get_by_role("heading", name="We couldn't find that page").is_visible()
    instance = ct_study.series.get().instances.get()
    response = page.goto(reverse("viewer:instance", args=[instance.id]))
    assert response.status == 404


# --- screenshots in the comparison layout ----------------------------------------------------

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


@pytest.mark.parametrize("size", SIZES)
def test_comparison_layout_screenshots(browser, live_server, client, patient, size):
    os.makedirs(SCREENSHOTS, exist_ok=True)
    ct = ingest_path(patient, get_testdata_file("CT_small.dcm")).study
    mr = ingest_path(patient, get_testdata_file("MR_small.dcm")).study
    colour = ingest_path(patient, get_testdata_file("examples_rgb_color.dcm")).study
    width, height = SIZES[size]
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": width, "height": height},
        has_touch=size == "phone",
        is_mobile=size == "phone",
    )
    page = context.new_page()
    try:
        sign_in(page, client, patient)
        for study, other, label in ((ct, mr, "ct-mr"), (colour, ct, "colour-ct")):
            open_viewer(page, study)
            if page.locator("#more-toggle").is_visible():  # on a phone: in the "More" menu
                page.locator("#more-toggle").click()
            page.select_option("#compare", reverse("viewer:study_images", args=[other.id]))
            wait_until_shown(page, 1)
            assert page.locator("#layout").input_value() == "1x2"
            canvas = page.evaluate("() => window.viewerTestHook.canvas(1)")
            assert canvas["lit"] > 50, canvas
            page.screenshot(path=f"{SCREENSHOTS}/{label}-{size}.png")
    finally:
        context.close()
