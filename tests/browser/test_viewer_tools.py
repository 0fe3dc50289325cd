"""The viewer's tools do what their buttons say, in real Chromium: whichever tool was chosen
before, the one chosen now gets the left button (and it alone)."""

import itertools

import pytest
from django.urls import reverse

from tests.browser.test_viewer_browser import (
    TIMEOUT,
    sign_in,
    stack_of_copies,
    state,
    viewport_centre,
    wait_until_series_loaded,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _test_hook(settings):
    settings.PHR_VIEWER_TEST_HOOK = True


TOOLS = ["WindowLevel", "StackScroll", "Pan", "Zoom", "Length", "Angle"]


def what_the_viewport_shows(page):
    shown = state(page)
    counts = page.evaluate(
        "() => window.viewerTestHook.measurements().reduce("
        "(n, m) => ({...n, [m.tool]: (n[m.tool] || 0) + 1}), {})"
    )
    return {
        "WindowLevel": shown["voi"],
        "StackScroll": shown["index"],
        "Pan": [round(v, 3) for v in shown["pan"]],
        "Zoom": round(shown["zoom"], 4),
        "Length": counts.get("Length", 0),
        "Angle": counts.get("Angle", 0),
    }


def drag_with_the_left_button(page, tool, start, end):
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=8)
    page.mouse.up()
    if tool == "Angle":  # an angle's third point is a click of its own, after a move
        page.mouse.move(end[0] + 40, start[1], steps=8)
        page.mouse.down()
        page.mouse.up()
        # That click is the tools' to interpret once their double-click window has passed:
        # wait until it has been taken as the angle's end.
        page.wait_for_function(
            "() => window.viewerTestHook.measurements().some(m => m.tool === 'Angle' && m.value)"
            " && !window.viewerTestHook.drawing()"
        )


def test_the_chosen_tool_gets_the_left_button_after_any_other(page, client, patient, tmp_path):
    series = stack_of_copies(patient, tmp_path, 8)
    console = []
    page.on("console", lambda message: console.append(message.text))
    sign_in(page, client, patient)
    page.goto(reverse("viewer:study", args=[series.study.id]))
    page.locator(f'[data-series-id="{series.id}"]').click()
    wait_until_series_loaded(page, str(series.id))
    page.wait_for_function(
        "id => window.viewerTestHook.state(0).ready && window.viewerTestHook.state(0).seriesId"
        " === id",
        arg=str(series.id),
        timeout=TIMEOUT,
    )
    x, y = viewport_centre(page)
    box = page.locator("#viewport-0").bounding_box()

    for n, (before, chosen) in enumerate(itertools.permutations(TOOLS, 2)):
        page.locator(f'[data-tool="{before}"]').click()
        page.locator(f'[data-tool="{chosen}"]').click()
        page.evaluate("() => window.viewerTestHook.clearMeasurements()")
        page.locator("#reset").click()
        # Away from the last drags, so that no handle left over is what gets picked.
        dx = (n % 5 - 2) * box["width"] / 12
        start, end = (x + dx, y - 40), (x + dx + 30, y + 60)
        if chosen == "StackScroll":
            page.locator("#viewport-0").focus()
            page.keyboard.press("Home")
        was = what_the_viewport_shows(page)
        drag_with_the_left_button(page, chosen, start, end)
        now = what_the_viewport_shows(page)

        changed = {tool for tool in TOOLS if now[tool] != was[tool]}
        if chosen == "Zoom":
            changed.discard("Pan")  # zooming about the pointer moves the image as it should
        assert changed == {chosen}, f"{before} then {chosen}: {sorted(changed)}; {was} -> {now}"
    # Drawing measurements breaks none of the page's security policy (no inline styles).
    assert not [line for line in console if "Content Security Policy" in line], console


# --- measurements in mm on every screen --------------------------------------------------------

CT_PIXEL_MM = 0.661468  # CT_small.dcm's Pixel Spacing (both ways)
CT_SIZE = 128  # its rows and columns


@pytest.mark.parametrize("renderer", ["cpu", "gpu"])
@pytest.mark.parametrize("pointer", ["mouse", "touch"])
@pytest.mark.parametrize("scale", [1, 2, 3])
def test_a_length_in_mm_is_the_geometric_truth_at_every_pixel_ratio(
    request, live_server, client, patient, ct_study, settings, scale, pointer, renderer
):
    settings.PHR_VIEWER_RENDERER = renderer
    browser = request.getfixturevalue("webgl_browser" if renderer == "gpu" else "browser")
    context = browser.new_context(
        base_url=live_server.url,
        device_scale_factor=scale,
        viewport={"width": 900, "height": 700},
        has_touch=pointer == "touch",
    )
    page = context.new_page()
    try:
        sign_in(page, client, patient)
        page.goto(reverse("viewer:study", args=[ct_study.id]))
        page.wait_for_function("() => window.viewerTestHook?.state(0).ready", timeout=TIMEOUT)
        assert state(page)["renderer"] == renderer
        box = page.locator("#viewport-0").bounding_box()
        # Fitted to the viewport, the square image spans its shorter side (CSS pixels).
        image_px_per_css_px = CT_SIZE / min(box["width"], box["height"])
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.locator('[data-tool="Length"]').click()
        span = min(box["width"], box["height"]) / 2
        if pointer == "touch":
            gesture(page.context.new_cdp_session(page), [(x - span / 2, y)], [(x + span / 2, y)])
        else:
            drag_with_the_left_button(page, "Length", (x - span / 2, y), (x + span / 2, y))
        page.wait_for_function(
            "() => window.viewerTestHook.measurements().some(m => m.value > 0 && m.settled)",
            timeout=TIMEOUT,
        )
        length = page.evaluate("() => window.viewerTestHook.measurements()")[0]
    finally:
        context.close()

    truth = span * image_px_per_css_px * CT_PIXEL_MM
    assert length["unit"] == "mm"
    # A handle lands on the nearest device pixel: half a CSS pixel at each end, at most.
    allowed = image_px_per_css_px * CT_PIXEL_MM
    assert abs(length["value"] - truth) <= allowed, (scale, pointer, length, truth)


# --- touch ------------------------------------------------------------------------------------


def touch(cdp, kind, points):
    cdp.send(
        "Input.dispatchTouchEvent",
        {"type": kind, "touchPoints": [{"x": x, "y": y} for x, y in points]},
    )


def gesture(cdp, starts, ends, steps=10):
    """Fingers down at `starts`, moved together to `ends`, lifted: real touch events."""
    touch(cdp, "touchStart", starts)
    for step in range(1, steps + 1):
        touch(
            cdp,
            "touchMove",
            [
                (sx + (ex - sx) * step / steps, sy + (ey - sy) * step / steps)
                for (sx, sy), (ex, ey) in zip(starts, ends, strict=True)
            ],
        )
    touch(cdp, "touchEnd", [])


def test_on_a_phone_one_finger_scrolls_a_pinch_zooms_and_two_fingers_pan(
    browser, live_server, client, patient, tmp_path
):
    series = stack_of_copies(patient, tmp_path, 8)
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": 390, "height": 844},
        device_scale_factor=3,
        has_touch=True,
        is_mobile=True,
    )
    page = context.new_page()
    try:
        sign_in(page, client, patient)
        page.goto(reverse("viewer:study", args=[series.study.id]))
        wait_until_series_loaded(page, str(series.id))
        page.wait_for_function("() => window.viewerTestHook.state(0).ready", timeout=TIMEOUT)
        cdp = page.context.new_cdp_session(page)
        box = page.locator("#viewport-0").bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        # On a phone the finger scrolls by default, as in a phone's own image viewers.
        assert page.locator('[data-tool="StackScroll"]').get_attribute("aria-pressed") == "true"

        before = state(page)
        gesture(cdp, [(x, y - 100)], [(x, y + 100)])
        page.wait_for_function(
            "i => window.viewerTestHook.state(0).index !== i", arg=before["index"], timeout=TIMEOUT
        )
        scrolled = state(page)
        assert scrolled["zoom"] == before["zoom"] and scrolled["voi"] == before["voi"]

        gesture(cdp, [(x - 30, y), (x + 30, y)], [(x - 120, y), (x + 120, y)])
        page.wait_for_function(
            "z => window.viewerTestHook.state(0).zoom > z", arg=scrolled["zoom"] * 1.5
        )
        pinched = state(page)
        assert pinched["index"] == scrolled["index"]

        gesture(cdp, [(x - 40, y), (x + 40, y)], [(x - 40, y + 120), (x + 40, y + 120)])
        page.wait_for_function(
            "y => window.viewerTestHook.state(0).pan[1] > y", arg=pinched["pan"][1] + 10
        )
        panned = state(page)
        # Fingers kept their distance: the zoom is unchanged but for double-precision rounding
        # of the camera, which Cornerstone recomputes as it pans.
        assert panned["zoom"] == pytest.approx(pinched["zoom"], rel=1e-12)
        assert panned["index"] == scrolled["index"]
    finally:
        context.close()


def test_measurements_are_deleted_one_by_one_and_cleared(page, client, patient, ct_study):
    sign_in(page, client, patient)
    page.goto(reverse("viewer:study", args=[ct_study.id]))
    page.wait_for_function("() => window.viewerTestHook?.state(0).ready", timeout=TIMEOUT)
    x, y = viewport_centre(page)
    page.locator('[data-tool="Length"]').click()
    for dy in (-80, 80):
        drag_with_the_left_button(page, "Length", (x - 100, y + dy), (x + 100, y + dy))
    page.wait_for_function(
        "() => window.viewerTestHook.measurements().filter(m => m.settled).length === 2",
        timeout=TIMEOUT,
    )
    page.locator('[data-tool="WindowLevel"]').click()

    page.mouse.click(x, y - 80)  # on the first line: selects it
    page.wait_for_function("() => window.viewerTestHook.selectedMeasurements() === 1")
    page.locator("#viewport-0").focus()
    page.keyboard.press("Delete")
    page.wait_for_function("() => window.viewerTestHook.measurements().length === 1")
    voi = state(page)["voi"]
    page.mouse.click(x, y + 80)
    page.wait_for_function("() => window.viewerTestHook.selectedMeasurements() === 1")
    page.locator("#measure-delete").click()
    page.wait_for_function("() => window.viewerTestHook.measurements().length === 0")
    assert state(page)["voi"] == voi  # clicking a measurement didn't window the image

    drag_with_the_left_button(page, "WindowLevel", (x, y), (x + 30, y + 30))
    page.locator('[data-tool="Angle"]').click()
    drag_with_the_left_button(page, "Angle", (x - 80, y), (x, y - 60))
    page.locator("#measure-clear").click()
    page.wait_for_function("() => window.viewerTestHook.measurements().length === 0")
