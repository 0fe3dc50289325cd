"""The viewer as a person reads it, at a laptop's size and a phone's: every control says what it
does, nothing is cut off the edge, and screenshots to look at (in /tmp/viewer-screens)."""

import os

import pytest
from django.test import Client
from django.urls import reverse

from phr.sharing import services as sharing_services
from tests.browser.test_viewer_browser import SCREENSHOTS, TIMEOUT, sign_in, stack_of_copies
from tests.browser.test_viewer_tools import drag_with_the_left_button, gesture
from tests.sharing.conftest import make_share, open_with_code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAPTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "has_touch": True,
    "is_mobile": True,
}
CONTROLS = "#viewer-app .vw-top .vw-btn, #viewer-app .vw-top select"


@pytest.fixture(autouse=True)
def _test_hook(settings):
    settings.PHR_VIEWER_TEST_HOOK = True


@pytest.fixture
def open_study(browser, live_server, client, patient, ct_study):
    contexts = []

    def open_at(size):
        context = browser.new_context(base_url=live_server.url, **size)
        contexts.append(context)
        page = context.new_page()
        sign_in(page, client, patient)
        page.goto(reverse("viewer:study", args=[ct_study.id]))
        page.wait_for_function("() => window.viewerTestHook?.state(0).ready", timeout=TIMEOUT)
        return page

    yield open_at
    for context in contexts:
        context.close()


def toolbar_overflows(page):
    return page.evaluate(
        "() => { const t = document.querySelector('.vw-toolbar');"
        " return t.scrollWidth > t.clientWidth + 1; }"
    )


def test_every_control_is_named_and_on_a_laptop_labelled_in_words(open_study):
    page = open_study(LAPTOP)
    assert not toolbar_overflows(page)
    assert page.locator("#more-toggle").is_hidden()
    buttons = page.locator("#viewer-app .vw-top .vw-btn")
    for i in range(buttons.count()):
        button = buttons.nth(i)
        assert button.get_attribute("aria-label"), button.inner_html()
        if button.is_hidden():  # the "More" button, needed on narrower screens only
            continue
        label = button.locator(".vw-label")
        assert label.is_visible() and label.inner_text().strip(), button.inner_html()
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=f"{SCREENSHOTS}/toolbar-1280x800.png")


def test_on_a_phone_the_rest_of_the_tools_are_in_a_more_menu(open_study):
    page = open_study(PHONE)
    assert not toolbar_overflows(page)
    assert page.locator("#invert").is_hidden()
    page.locator("#more-toggle").click()
    assert page.locator("#more-toggle").get_attribute("aria-expanded") == "true"
    for control in ("#invert", "#reset", '[data-tool="Angle"]', "#measure-clear", "#layout"):
        assert page.locator(control).is_visible(), control
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=f"{SCREENSHOTS}/toolbar-more-390x844.png")
    page.locator("#invert").click()  # used: the menu closes, and the image is inverted
    assert page.locator("#invert").is_hidden()
    assert page.locator("#more-toggle").get_attribute("aria-expanded") == "false"
    assert page.locator("#invert").get_attribute("aria-pressed") == "true"


def test_an_empty_viewport_says_how_to_fill_it(open_study):
    page = open_study(LAPTOP)
    hint = "#grid .vw-cell:nth-child({}) .vw-drop-hint"
    assert page.locator(hint.format(1)).is_hidden()
    page.select_option("#layout", "2x2")  # one series: three viewports stay empty
    for n in (2, 3, 4):
        assert page.locator(hint.format(n)).is_visible(), n
        assert "Drag a series here" in page.locator(hint.format(n)).inner_text()
    page.locator("#viewport-1").click()
    page.locator(".vw-series").first.click()
    page.wait_for_function("() => window.viewerTestHook.state(1).ready", timeout=TIMEOUT)
    assert page.locator(hint.format(2)).is_hidden()
    assert page.locator(hint.format(3)).is_visible()
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=f"{SCREENSHOTS}/empty-viewports-1280x800.png")


def test_a_doctors_open_viewer_says_so_when_the_share_ends(browser, live_server, patient, tmp_path):
    series = stack_of_copies(patient, tmp_path, 8)
    share, secrets = make_share(patient, [series.study])
    doctor = Client()
    assert open_with_code(doctor, secrets.code).status_code == 302
    context = browser.new_context(base_url=live_server.url, **LAPTOP)
    context.add_cookies(
        [{"name": "sessionid", "value": doctor.cookies["sessionid"].value, "url": live_server.url}]
    )
    page = context.new_page()
    first = str(series.instances.get(instance_number=1).id)
    held = []  # every image but the first, kept from the browser until the share has ended

    def hold(route):
        held.append(route)

    def holding(url):
        return "/files/" in url or ("/viewer/instances/" in url and first not in url)

    try:
        page.route(holding, hold)
        with page.expect_request(lambda request: holding(request.url), timeout=TIMEOUT):
            page.goto(reverse("viewer:study", args=[series.study.id]))
        page.wait_for_function("() => window.viewerTestHook?.state(0).ready", timeout=TIMEOUT)

        sharing_services.revoke(share)
        for route in list(held):
            route.continue_()
        page.unroute(holding, hold)  # lets through any held since, as well

        page.wait_for_function(
            "() => window.viewerTestHook.state(0).error?.includes('This share has ended')",
            timeout=TIMEOUT,
        )
        assert page.locator("#viewport-0 ~ .vw-message").is_visible()
        os.makedirs(SCREENSHOTS, exist_ok=True)
        page.screenshot(path=f"{SCREENSHOTS}/share-ended-in-viewer-1280x800.png")

        page.goto(reverse("viewer:study", args=[series.study.id]))  # a URL the doctor kept
        assert page.locator("#share-ended").is_visible()
        page.screenshot(path=f"{SCREENSHOTS}/share-ended-page-1280x800.png")
        phone = browser.new_context(base_url=live_server.url, **PHONE)
        phone.add_cookies(context.cookies())
        on_the_phone = phone.new_page()
        on_the_phone.goto(reverse("viewer:study", args=[series.study.id]))
        assert on_the_phone.locator("#share-ended").is_visible()
        on_the_phone.screenshot(path=f"{SCREENSHOTS}/share-ended-page-390x844.png")
        phone.close()
    finally:
        context.close()


@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_screenshots_of_a_measured_ct(open_study, size):
    page = open_study(LAPTOP if size == "laptop" else PHONE)
    box = page.locator("#viewport-0").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    span = min(box["width"], box["height"]) / 3
    page.locator('[data-tool="Length"]').click()
    if size == "phone":
        gesture(page.context.new_cdp_session(page), [(x - span, y)], [(x + span, y)])
    else:
        drag_with_the_left_button(page, "Length", (x - span, y), (x + span, y))
    page.wait_for_function(
        "() => window.viewerTestHook.measurements().some(m => m.value > 0 && m.settled)",
        timeout=TIMEOUT,
    )
    length = page.evaluate("() => window.viewerTestHook.measurements()")[0]
    # The label is drawn on the annotation layer's next frame, after the value is known.
    page.get_by_text(f"{length['value']:.1f} mm").wait_for(state="visible", timeout=TIMEOUT)
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=f"{SCREENSHOTS}/measured-ct-{size}.png")
