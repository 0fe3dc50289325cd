"""Every look a doctor takes is in the patient's access log: the images (per series, counted,
one line per browser per hour), the DICOM details, each document by name, the ZIP. One route
per kind of object serves the patient and the doctor alike, so there is no way around the log.
"""

import io
import json
import time
import zipfile
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from phr.rights.export import full_export
from phr.sharing.models import AccessEvent, Event, Tally
from tests.sharing.conftest import attach_pdf, make_share, open_with_code
from tests.support.vaultdata import add_one_image_series, ingest_path

SLICES = 12


@pytest.fixture
def ct(patient, tmp_path):
    """A 12-slice CT and, in the same study, a one-image series."""
    from bench.common import synthesize_ct

    for path in synthesize_ct(tmp_path / "ct", slices=SLICES, size=64):
        assert ingest_path(patient, path).outcome == "stored"
    study = patient.studies.get()
    add_one_image_series(study.series.get(), tmp_path)
    return study


@pytest.fixture
def listing(doctor, patient, ct):
    share, secrets = make_share(patient, [ct], allow_download=True, label="Dr Rivera")
    assert open_with_code(doctor, secrets.code).status_code == 302
    data = doctor.get(reverse("viewer:study_images", args=[ct.id])).json()
    return share, data


def fetch_batch(doctor, data, images):
    ids = ",".join(image["id"].replace("-", "") for image in images)
    response = doctor.get(f"{data['study']['files_url']}?ids={ids}")
    assert response.status_code == 200
    if response.streaming:
        b"".join(response.streaming_content)
    return response


def counted(share, kind=Event.IMAGES):
    return list(Tally.objects.filter(share=share, kind=kind).select_related("event"))


def stack(data):
    return max(data["series"], key=lambda series: len(series["images"]))


def test_a_batch_of_images_is_one_counted_line_per_series(doctor, listing):
    share, data = listing
    images = stack(data)["images"]
    assert len(images) == SLICES
    fetch_batch(doctor, data, images[:5])
    fetch_batch(doctor, data, images[5:])

    [tally] = counted(share)
    assert tally.images == SLICES
    assert tally.event.kind == Event.IMAGES
    assert tally.event.detail.startswith(stack(data)["description"])
    assert tally.event.ip and tally.event.user_agent and tally.event.visitor


def test_the_same_images_fetched_again_are_not_counted_twice(doctor, listing):
    share, data = listing
    images = stack(data)["images"]
    fetch_batch(doctor, data, images[:6])
    with CaptureQueriesContext(connection) as queries:
        fetch_batch(doctor, data, images[:6])  # the doctor reloaded the page
    # Nothing new to count (within the minute the page shows): read, not written. (Read now:
    # the next request empties the connection's query log.)
    tallied = [q["sql"] for q in queries.captured_queries if "sharing_tally" in q["sql"]]
    assert tallied and not [sql for sql in tallied if sql.startswith(("UPDATE", "INSERT"))]
    doctor.get(images[0]["url"])  # and the viewport asked for the first one on its own
    [tally] = counted(share)
    assert tally.images == 6


def test_a_single_image_and_another_series_are_counted_apart(doctor, listing):
    share, data = listing
    other = min(data["series"], key=lambda series: len(series["images"]))
    response = doctor.get(other["images"][0]["url"])
    assert response.status_code in (200, 302)
    fetch_batch(doctor, data, stack(data)["images"][:3])
    tallies = {tally.series_id: tally.images for tally in counted(share)}
    assert tallies == {
        _uuid(other["id"]): 1,
        _uuid(stack(data)["id"]): 3,
    }


def test_a_new_hour_starts_a_new_line(doctor, listing, monkeypatch):
    from phr.sharing import audit

    share, data = listing
    images = stack(data)["images"]
    fetch_batch(doctor, data, images[:2])
    # An hour later, as far as the access log can tell (the doctor's session, unchanged).
    later = timezone.now() + timedelta(hours=1)
    monkeypatch.setattr(audit, "timezone", SimpleNamespace(now=lambda: later))
    fetch_batch(doctor, data, images[2:4])
    assert sorted(tally.images for tally in counted(share)) == [2, 2]


def test_recording_a_batch_costs_no_query_per_image(doctor, listing, django_assert_max_num_queries):
    _share, data = listing
    images = stack(data)["images"]
    fetch_batch(doctor, data, images[:1])
    with django_assert_max_num_queries(20) as few:
        fetch_batch(doctor, data, images[1:2])
    with django_assert_max_num_queries(len(few.captured_queries)):
        fetch_batch(doctor, data, images[2:])  # ten images: the same queries as one


def test_the_dicom_details_are_counted_per_series(doctor, listing):
    share, data = listing
    for image in stack(data)["images"][:3]:
        assert doctor.get(image["tags_url"]).status_code == 200
    [tally] = counted(share, Event.TAGS)
    assert tally.images == 3
    assert tally.event.get_kind_display() == "Read the DICOM details"


def test_the_patient_does_not_log_their_own_looks(patient_client, patient, ct):
    share, _ = make_share(patient, [ct])
    data = patient_client.get(reverse("viewer:study_images", args=[ct.id])).json()
    fetch_batch(patient_client, data, stack(data)["images"][:3])
    assert not counted(share)
    assert set(share.events.values_list("kind", flat=True)) == {Event.CREATED}


def test_documents_have_one_route_that_logs_each_opening_by_name(doctor, patient, listing, ct):
    share, _ = listing
    report = attach_pdf(patient, ct, "Radiology report.pdf")
    # The doctor's pages link to the same route as the patient's.
    page = doctor.get(reverse("sharing:shared_study", args=[ct.id])).content.decode()
    url = reverse("vault:document", args=[report.pk])
    assert url in page
    with pytest.raises(NoReverseMatch):
        reverse("sharing:shared_document", args=[report.pk])

    opened = doctor.get(url)
    assert opened.status_code == 200
    assert opened["Cache-Control"] == "private, no-store"  # a hospital PC keeps no copy
    assert "sandbox" in opened["Content-Security-Policy"]
    assert doctor.get(url + "?download").status_code == 200
    lines = AccessEvent.objects.filter(share=share, object_id=report.pk).order_by("at", "pk")
    assert [(line.kind, line.detail) for line in lines] == [
        (Event.DOCUMENT, "Radiology report.pdf"),
        (Event.DOCUMENT_SAVED, "Radiology report.pdf"),
    ]


def test_the_zip_has_one_route_that_logs_it(doctor, listing, ct):
    share, _ = listing
    with pytest.raises(NoReverseMatch):
        reverse("sharing:shared_download", args=[ct.id])
    page = doctor.get(reverse("sharing:shared_study", args=[ct.id])).content.decode()
    url = reverse("vault:download_study", args=[ct.id])
    assert url in page
    response = doctor.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content)[:2] == b"PK"
    assert share.events.filter(kind=Event.DOWNLOADED).count() == 1


def test_a_view_only_share_gives_no_zip(doctor, patient, ct):
    _share, secrets = make_share(patient, [ct], allow_download=False)
    open_with_code(doctor, secrets.code)
    assert doctor.get(reverse("vault:download_study", args=[ct.id])).status_code == 404


def test_the_share_page_says_plainly_what_was_seen(doctor, listing, sharer):
    share, data = listing
    fetch_batch(doctor, data, stack(data)["images"])
    page = sharer.get(reverse("sharing:detail", args=[share.pk])).content.decode()
    tally = counted(share)[0]
    local = timezone.localtime
    span = f"{local(tally.event.at):%H:%M}\N{EN DASH}{local(tally.last_at):%H:%M}"
    whose = "Dr Rivera\N{RIGHT SINGLE QUOTATION MARK}s browser"
    sentence = f"{whose} viewed {tally.event.detail}: {SLICES} images, {span}"
    assert sentence in page


def test_the_export_carries_every_line_with_its_count(doctor, listing, patient):
    _share, data = listing
    fetch_batch(doctor, data, stack(data)["images"][:4])
    archive = zipfile.ZipFile(io.BytesIO(b"".join(full_export(patient).chunks())))
    record = next(name for name in archive.namelist() if name.endswith("shares.json"))
    log = json.loads(archive.read(record))[0]["access_log"]
    images = [line for line in log if line["what"] == "Viewed images"]
    assert [line["images"] for line in images] == [4]
    table = archive.read(next(n for n in archive.namelist() if n.endswith("access_log.csv")))
    assert b"Viewed images" in table


def _uuid(text):
    import uuid

    return uuid.UUID(text)


def test_thumbnails_are_counted_per_study(doctor, listing, ct):
    share, _ = listing
    for series in ct.series.all():
        assert doctor.get(reverse("vault:series_thumbnail", args=[series.pk])).status_code in (
            200,
            302,
        )
    [tally] = counted(share, Event.PREVIEWS)
    assert (tally.series_id, tally.images) == (ct.pk, ct.series.count())


def test_the_page_the_viewer_and_its_list_are_one_look(doctor, listing, ct):
    share, _ = listing  # the fixture already asked for the list
    assert doctor.get(reverse("viewer:study", args=[ct.id])).status_code == 200
    assert doctor.get(reverse("viewer:study_images", args=[ct.id])).status_code == 200
    assert share.events.filter(kind=Event.VIEWED).count() == 1


@pytest.fixture
def gathering(settings):
    """Single images counted in bulk, as in production (the suite writes each at once)."""
    from phr.sharing import tallies

    settings.PHR_AUDIT_FLUSH_SECONDS = 3600
    yield tallies
    if tallies._timer is not None:
        tallies._timer.cancel()
    tallies._pending.clear()  # nothing of this test's left for the next one
    tallies._known.clear()


def test_single_images_are_counted_in_bulk_after_the_line_is_written(doctor, listing, gathering):
    share, data = listing
    images = stack(data)["images"]
    for image in images[:4]:
        assert doctor.get(image["url"]).status_code in (200, 302)
    # The line is in the log with the first image, before its bytes went out...
    [tally] = counted(share)
    assert tally.images == 1
    # ...and the rest are written together (by the timer, or when the process exits).
    gathering.flush()
    [tally] = counted(share)
    assert tally.images == 4
    # A batch is written at once.
    fetch_batch(doctor, data, images)
    [tally] = counted(share)
    assert tally.images == SLICES


@pytest.mark.django_db(transaction=True)
def test_the_timer_writes_what_was_gathered(doctor, listing, gathering, settings):
    settings.PHR_AUDIT_FLUSH_SECONDS = 0.2
    share, data = listing
    for image in stack(data)["images"][:3]:
        assert doctor.get(image["url"]).status_code in (200, 302)
    deadline = time.monotonic() + 30
    while counted(share)[0].images < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counted(share)[0].images == 3
