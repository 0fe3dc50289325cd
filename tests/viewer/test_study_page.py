"""The viewer page: who may open it, its CSP, the download flag and the test hook switch."""

import io

import pytest
from django.urls import reverse
from pydicom.data import get_testdata_file

from phr.vault.ingest import ingest_file
from tests.support.vaultdata import ingest_path


def page_url(study):
    return reverse("viewer:study", args=[study.id])


def test_owner_gets_the_viewer_with_wasm_allowed(patient_client, ct_study):
    response = patient_client.get(page_url(ct_study))
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    script_src = next(part for part in csp.split(";") if part.strip().startswith("script-src"))
    assert "'wasm-unsafe-eval'" in script_src and "'unsafe-eval'" not in script_src.replace(
        "'wasm-unsafe-eval'", ""
    )
    assert "worker-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    html = response.content.decode()
    assert reverse("viewer:study_images", args=[ct_study.id]) in html
    assert "/static/vendor/cornerstone3d/cornerstone3d.js" in html
    assert 'id="download"' in html  # the owner may always download
    assert "data-test-hook" not in html
    assert response["Cache-Control"] == "private, no-store"


def test_the_page_has_the_browser_fetch_the_first_image_at_once(patient_client, cd_studies):
    # The first image of the first series with pixels (this CD's first series is a report).
    study = next(s for s in cd_studies if s.series.count() > 1)
    first = patient_client.get(reverse("viewer:study_images", args=[study.id])).json()
    first_url = first["series"][0]["images"][0]["url"]
    html = patient_client.get(page_url(study)).content.decode()
    assert f'<link rel="preload" href="{first_url}" as="fetch" crossorigin>' in html
    assert "/static/viewer/fetcher.js" in html  # the worker that fetches the rest


def test_the_rest_of_the_site_keeps_wasm_off(patient_client, ct_study):
    response = patient_client.get(reverse("vault:home"))
    assert "wasm-unsafe-eval" not in response["Content-Security-Policy"]


def test_test_hook_only_when_the_setting_is_on(patient_client, ct_study, settings):
    settings.PHR_VIEWER_TEST_HOOK = True
    assert "data-test-hook" in patient_client.get(page_url(ct_study)).content.decode()


def test_documents_of_the_study_open_from_the_page(patient_client, patient, ct_study):
    pdf = io.BytesIO(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    document = ingest_file(patient, pdf, filename="report.pdf", attach_to=ct_study).document
    html = patient_client.get(page_url(ct_study)).content.decode()
    assert reverse("vault:document", args=[document.id]) in html
    assert "report.pdf" in html


def test_another_patient_gets_a_kind_404_page(client, other_patient, ct_study):
    client.force_login(other_patient)
    response = client.get(page_url(ct_study))
    assert response.status_code == 404
    assert b"couldn't find that page" in response.content


def test_anonymous_gets_404(client, ct_study):
    assert client.get(page_url(ct_study)).status_code == 404


def test_tags_of_an_image_name_every_element(patient_client, patient):
    result = ingest_path(patient, get_testdata_file("CT_small.dcm"))
    response = patient_client.get(reverse("viewer:instance_tags", args=[result.instance.id]))
    assert response.status_code == 200
    rows = {row["tag"]: row for row in response.json()["tags"]}
    assert rows["0010,0010"]["name"] == "Patient's Name"
    assert rows["0010,0010"]["value"] == "CompressedSamples^CT1"
    assert rows["0002,0010"]["value"] == "1.2.840.10008.1.2.1"
    assert "7FE0,0010" not in rows  # pixel data is never read


@pytest.mark.parametrize("name", ["examples_overlay.dcm", "image_dfl.dcm", "rtdose.dcm"])
def test_tags_of_large_deflated_and_nested_headers(patient_client, patient, name):
    result = ingest_path(patient, get_testdata_file(name))
    response = patient_client.get(reverse("viewer:instance_tags", args=[result.instance.id]))
    assert response.status_code == 200
    rows = response.json()["tags"]
    assert any(row["tag"] == "0008,0060" for row in rows)  # Modality
    assert all(len(row["value"]) <= 200 for row in rows)


def test_tags_of_anothers_image_are_404(client, other_patient, ct_study):
    client.force_login(other_patient)
    instance = ct_study.series.get().instances.get()
    assert client.get(reverse("viewer:instance_tags", args=[instance.id])).status_code == 404
