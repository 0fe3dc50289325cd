"""Small helpers shared by the reliability tests."""

import io
from urllib.parse import quote

from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from phr.vault import blobs
from phr.vault.models import Instance, Series, Study


def upload(client, data: bytes, filename: str):
    """One file, as the "Add studies" page sends it: the raw body, the name in a header."""
    return client.post(
        reverse("vault:upload_file"),
        data=data,
        content_type="application/octet-stream",
        headers={"X-Upload-Filename": quote(filename)},
    )


def only_result(response) -> dict:
    results = response.json()["results"]
    assert len(results) == 1, results
    return results[0]


def assert_try_again(response) -> None:
    """The patient's answer when storage or the database failed part-way."""
    assert response.status_code == 503, response.content[:500]
    result = only_result(response)
    assert result["outcome"] == "error"
    assert result["code"] == "try_again"
    assert "please try again" in result["message"].lower()
    assert "Nothing was lost" in result["message"]


def rows_of(owner) -> tuple[int, int, int]:
    return (
        Study.objects.filter(owner=owner).count(),
        Series.objects.filter(study__owner=owner).count(),
        Instance.objects.filter(owner=owner).count(),
    )


def stored_keys(owner) -> list[str]:
    """Every blob under the owner's prefix (the S3 bucket is shared by the whole run)."""
    return sorted(blobs.keys_under(f"vault/{owner.pk}"))


def check_vault(owner, *args) -> tuple[bool, str]:
    """`manage.py check_vault --owner … ARGS`: (exit status 0?, what it printed)."""
    out = io.StringIO()
    try:
        call_command("check_vault", "--owner", owner.email, *args, stdout=out)
    except CommandError:
        return False, out.getvalue()
    return True, out.getvalue()


def section_count(report: str, title: str) -> int:
    """The count a check_vault report gives in the section starting with `title`."""
    line = next(x for x in report.splitlines() if x.startswith(title))
    return int(line.rsplit(":", 1)[1])


def orphan_count(report: str) -> int:
    return section_count(report, "Orphan blobs past the grace")


# What a fault may leave and `check_vault --fix` removes, as opposed to lost or damaged data.
LEFTOVER_SECTIONS = (
    "Orphan blobs past the grace",
    "Unreferenced thumbnails past the grace",
    "Incomplete multipart uploads past the grace",
    "Stale temp files",
)
LOSS_SECTIONS = ("Rows without a blob", "Checksum mismatches", "Unreadable blobs")


def leftover_count(report: str) -> int:
    return sum(section_count(report, title) for title in LEFTOVER_SECTIONS)


def assert_only_leftovers(report: str) -> None:
    """A fault may leave leftovers, never lost data: every problem the report counts is one
    that `--fix` removes."""
    assert all(section_count(report, title) == 0 for title in LOSS_SECTIONS), report
    leftovers = leftover_count(report)
    last_line = report.rstrip().splitlines()[-1]
    assert last_line == ("OK." if not leftovers else f"{leftovers} problem(s) remain."), report
