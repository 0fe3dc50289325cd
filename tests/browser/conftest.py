"""Fixtures of the browser tests."""

import pytest


@pytest.fixture
def page_log(page):
    """All the page says (warnings too) and the requests that failed: what a wait that timed
    out reports."""
    lines = []
    page.on("console", lambda msg: lines.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: lines.append(f"page error: {exc}"))
    page.on("requestfailed", lambda r: lines.append(f"request failed: {r.url[:120]} {r.failure}"))
    return lines
