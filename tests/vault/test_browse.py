"""The vault home (list, search, filters), the study page and serving documents, each tested for
the owner, another patient, an anonymous visitor and a patient who hasn't set up TOTP."""

from datetime import date

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image
from pydicom.data import get_testdata_file

from phr.vault.browse import StudyFilters, search_studies, study_kind
from phr.vault.ingest import ingest_file
from phr.vault.models import Document, Study
from tests.factories import PASSWORD
from tests.support.vaultdata import ingest_path

# --- helpers -------------------------------------------------------------------------------


def listed_titles(response) -> list[str]:
    return [card.study.title for card in response.context["cards"]]


def make_pdf(tmp_path, name="report.pdf", colour="white") -> str:
    target = tmp_path / name
    Image.new("RGB", (60, 80), colour).save(target, "PDF")
    return str(target)


@pytest.fixture
def pdf_document(patient, tmp_path) -> Document:
    result = ingest_path(patient, make_pdf(tmp_path), filename="Befund Müller 2024.pdf")
    assert result.outcome == "document", result.message
    return result.document


# --- the vault home ------------------------------------------------------------------------


def test_home_lists_every_study_newest_first_with_counts(patient_client, cd_studies):
    response = patient_client.get(reverse("vault:home"))
    assert response.status_code == 200
    titles = listed_titles(response)
    assert len(titles) == 7
    assert titles[0] == "Testing File-set"  # 2020
    assert titles[-1] == "CT, HEAD/BRAIN WO CONTRAST"  # 1995
    html = response.content.decode()
    assert "CT, HEAD/BRAIN WO CONTRAST" in html
    assert "XR C Spine Comp Min 4 Views" in html
    # Plain words and the DICOM codes, the counts and where each study came from.
    assert "X-ray" in html and "MRI scan" in html and "CT scan" in html
    assert ">CR<" in html and ">MR<" in html
    assert "3 series · 3 images" in html  # the C-spine X-rays
    assert "1 series · 4 images" in html  # the head CT
    assert "3 Sep 1995" in html
    assert "CD upload" in html
    assert "You have 7 studies in your vault" in html


def test_home_shows_institution_and_thumbnail_links(patient_client, ct_study):
    series = ct_study.series.get()
    html = patient_client.get(reverse("vault:home")).content.decode()
    assert "JFK IMAGING CENTER" in html
    assert reverse("vault:series_thumbnail", args=[series.id]) in html


def test_study_without_images_shows_the_modality_icon(patient_client, patient):
    ingest_path(patient, get_testdata_file("rtplan.dcm"))
    html = patient_client.get(reverse("vault:home")).content.decode()
    assert "/static/img/modality/report.svg" in html
    assert "thumbnail.png" not in html


def test_filter_by_kind_of_scan(patient_client, cd_studies):
    response = patient_client.get(reverse("vault:home"), {"kind": "X-ray"})
    assert listed_titles(response) == ["XR C Spine Comp Min 4 Views"]
    response = patient_client.get(reverse("vault:home"), {"kind": "MRI scan"})
    assert sorted(listed_titles(response)) == ["Brain", "Brain-MRA", "Carotids"]
    assert "3 of your 7 studies match." in response.content.decode()


def test_kind_choices_are_the_kinds_the_patient_has(patient_client, cd_studies):
    form = patient_client.get(reverse("vault:home")).context["form"]
    assert [value for value, _label in form.fields["kind"].choices] == [
        "",
        "CT scan",
        "MRI scan",
        "X-ray",
    ]


def test_filter_by_text_matches_description_body_part_and_institution(
    patient_client, cd_studies, ct_study
):
    home = reverse("vault:home")
    assert listed_titles(patient_client.get(home, {"q": "spine"})) == [
        "XR C Spine Comp Min 4 Views"
    ]
    # Every word must match somewhere; case doesn't matter.
    assert listed_titles(patient_client.get(home, {"q": "HEAD contrast"})) == [
        "CT, HEAD/BRAIN WO CONTRAST"
    ]
    assert listed_titles(patient_client.get(home, {"q": "jfk imaging"})) == [ct_study.title]
    # The kind of scan counts too, in plain words or as the DICOM code.
    assert sorted(listed_titles(patient_client.get(home, {"q": "mri"}))) == [
        "Brain",
        "Brain-MRA",
        "Carotids",
    ]
    assert listed_titles(patient_client.get(home, {"q": "x-ray"})) == [
        "XR C Spine Comp Min 4 Views"
    ]
    response = patient_client.get(home, {"q": "carotids spine"})
    assert listed_titles(response) == []
    assert "None of your studies match this search." in response.content.decode()


def test_filter_by_date_range(patient_client, cd_studies):
    home = reverse("vault:home")
    response = patient_client.get(home, {"date_from": "2001-01-01", "date_to": "2002-12-31"})
    titles = listed_titles(response)
    assert sorted(titles) == ["CT study", "XR C Spine Comp Min 4 Views"]
    # Dates typed the wrong way round mean the same range.
    reversed_range = {"date_from": "2002-12-31", "date_to": "2001-01-01"}
    assert sorted(listed_titles(patient_client.get(home, reversed_range))) == sorted(titles)
    assert len(listed_titles(patient_client.get(home, {"date_from": "2003-01-01"}))) == 4


def test_filters_combine(patient_client, cd_studies):
    params = {"kind": "CT scan", "date_to": "2000-01-01", "q": "brain"}
    response = patient_client.get(reverse("vault:home"), params)
    assert listed_titles(response) == ["CT, HEAD/BRAIN WO CONTRAST"]


def test_a_bad_filter_value_is_ignored_not_an_error(patient_client, cd_studies):
    response = patient_client.get(reverse("vault:home"), {"date_from": "yesterday", "q": "spine"})
    assert response.status_code == 200
    assert listed_titles(response) == ["XR C Spine Comp Min 4 Views"]


def test_search_service_matches_whole_modality_words(patient, cd_studies):
    # "CT" must not match a study whose modalities merely contain those letters.
    Study.objects.filter(description="Carotids").update(modalities="MR OCT")
    found = search_studies(patient.studies.all(), StudyFilters(kind="CT scan"))
    assert "Carotids" not in [study.title for study in found]
    assert study_kind(Study(modalities="CT SR")) == "CT scan"
    assert study_kind(Study(modalities="PT CT")) == "PET scan and CT scan"


def test_empty_vault_offers_the_cd_upload(patient_client):
    response = patient_client.get(reverse("vault:home"))
    html = response.content.decode()
    assert "Your vault is empty for now" in html
    assert f'href="{reverse("vault:upload")}"' in html
    assert "Add studies from a CD" in html


def test_home_never_lists_another_patients_studies(patient_client, other_patient, ct_study):
    ingest_path(other_patient, get_testdata_file("MR_small.dcm"))
    titles = listed_titles(patient_client.get(reverse("vault:home")))
    assert titles == [ct_study.title]


def test_home_lists_standalone_documents(patient_client, pdf_document):
    html = patient_client.get(reverse("vault:home")).content.decode()
    assert "My documents" in html
    assert "Befund Müller 2024.pdf" in html
    assert reverse("vault:document", args=[pdf_document.id]) in html


def test_home_page_has_no_inline_script_or_style(patient_client, cd_studies):
    html = patient_client.get(reverse("vault:home")).content.decode()
    assert "style=" not in html
    assert "<script>" not in html and "onclick" not in html


# --- the study page ------------------------------------------------------------------------


def test_study_page_explains_the_study_in_plain_words(patient_client, ct_study):
    response = patient_client.get(reverse("vault:study", args=[ct_study.id]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "CT scan" in html
    assert "19 January 2004" in html
    assert "JFK IMAGING CENTER" in html
    assert "CT1 CompressedSamples" in html  # the name on the images, for the patient to check
    # The account holder's name shares nothing with the label: the kind warning shows.
    assert "labelled for another person" in html
    assert "Technical details" in html and "<details" in html
    assert ct_study.study_instance_uid in html
    assert "Explicit VR Little Endian" in html
    assert reverse("vault:download_study", args=[ct_study.id]) in html
    assert reverse("vault:delete_study", args=[ct_study.id]) in html
    assert f"{reverse('sharing:create')}?study={ct_study.id}" in html
    series = ct_study.series.get()
    assert reverse("vault:series_thumbnail", args=[series.id]) in html
    assert "style=" not in html


def test_technical_details_list_each_transfer_syntax_once(patient_client, cd_studies):
    spine = next(study for study in cd_studies if study.modalities == "CR")
    html = patient_client.get(reverse("vault:study", args=[spine.id])).content.decode()
    assert html.count("Explicit VR Little Endian (1.2.840.10008.1.2.1)") == 1
    assert "Neck (cervical spine)" in html


def test_study_page_links_to_the_viewer(patient_client, ct_study):
    html = patient_client.get(reverse("vault:study", args=[ct_study.id])).content.decode()
    assert "View the images" in html
    assert f'href="{reverse("viewer:study", args=[ct_study.id])}"' in html


def _urls_without_viewer():
    from phr import urls as site_urls

    return [one for one in site_urls.urlpatterns if getattr(one, "namespace", None) != "viewer"]


urlpatterns = _urls_without_viewer()


def test_study_page_has_no_view_button_without_a_viewer(patient_client, ct_study, settings):
    # The page must not break (or link nowhere) on a deployment without the viewer app.
    settings.ROOT_URLCONF = __name__
    response = patient_client.get(reverse("vault:study", args=[ct_study.id]))
    assert response.status_code == 200
    assert "View the images" not in response.content.decode()


def test_study_page_lists_attached_documents(patient_client, patient, ct_study, tmp_path):
    with open(make_pdf(tmp_path), "rb") as original, (tmp_path / "copy").open("w+b") as copy:
        copy.write(original.read())
        result = ingest_file(patient, copy, filename="CT report.pdf", attach_to=ct_study)
    html = patient_client.get(reverse("vault:study", args=[ct_study.id])).content.decode()
    assert "Reports and documents" in html
    assert "CT report.pdf" in html
    assert reverse("vault:document", args=[result.document.id]) in html


# --- serving documents ---------------------------------------------------------------------


def test_document_is_served_inline_with_safe_headers(patient_client, pdf_document):
    response = patient_client.get(reverse("vault:document", args=[pdf_document.id]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == (
        'inline; filename="Befund Muller 2024.pdf"; '
        "filename*=UTF-8''Befund%20M%C3%BCller%202024.pdf"
    )
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"].startswith("sandbox")
    assert response["ETag"] == f'"{pdf_document.sha256}"'
    assert "private" in response["Cache-Control"]
    body = b"".join(response.streaming_content)
    with default_storage.open(pdf_document.storage_key, "rb") as stored:
        assert body == stored.read()
    assert body.startswith(b"%PDF-")


def test_document_download_link_asks_for_an_attachment(patient_client, pdf_document):
    url = reverse("vault:document", args=[pdf_document.id])
    response = patient_client.get(url, {"download": "1"})
    assert response["Content-Disposition"].startswith("attachment; ")


def test_document_revalidation_gives_304(patient_client, pdf_document):
    url = reverse("vault:document", args=[pdf_document.id])
    response = patient_client.get(url, headers={"if-none-match": f'"{pdf_document.sha256}"'})
    assert response.status_code == 304


def test_picture_document_keeps_its_type_and_a_quote_cannot_break_the_header(
    patient_client, patient, tmp_path
):
    picture = tmp_path / "scan.png"
    Image.new("RGB", (20, 20), "red").save(picture, "PNG")
    result = ingest_path(patient, picture, filename='my "knee".png')
    response = patient_client.get(reverse("vault:document", args=[result.document.id]))
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"].startswith('inline; filename="my knee.png"; ')


# --- the four callers ----------------------------------------------------------------------

OWNER_VIEWS = ["study", "series_thumbnail", "document", "delete_study"]


@pytest.fixture
def owned(ct_study, pdf_document):
    """One URL per protected view, each pointing at the patient's own object."""
    return {
        "home": reverse("vault:home"),
        "study": reverse("vault:study", args=[ct_study.id]),
        "series_thumbnail": reverse("vault:series_thumbnail", args=[ct_study.series.get().id]),
        "document": reverse("vault:document", args=[pdf_document.id]),
        "delete_study": reverse("vault:delete_study", args=[ct_study.id]),
    }


def reauthenticate(client):
    response = client.post(reverse("account_reauthenticate"), {"password": PASSWORD})
    assert response.status_code == 302, response.content[:300]


@pytest.mark.parametrize("name", ["home", *OWNER_VIEWS])
def test_owner_gets_the_page(patient_client, owned, name):
    if name == "delete_study":
        reauthenticate(patient_client)
    assert patient_client.get(owned[name]).status_code == 200


@pytest.mark.parametrize("name", OWNER_VIEWS)
def test_another_patient_gets_404(client, other_patient, owned, name):
    from tests.conftest import login_with_totp, wait_for_fresh_totp_window

    wait_for_fresh_totp_window()
    login_with_totp(client, other_patient)
    reauthenticate(client)
    assert client.get(owned[name]).status_code == 404
    assert client.post(owned["delete_study"]).status_code == 404
    assert Study.objects.filter(pk=owned["study"].split("/")[-2]).exists()


# Thumbnails and documents are open to doctors holding a share (they have no account), so an
# anonymous visitor without one gets the access helper's 404 there instead of a login page.
SHARE_REACHABLE = {"series_thumbnail", "document"}


@pytest.mark.parametrize("name", ["home", *OWNER_VIEWS])
def test_anonymous_visitor_is_sent_to_login(client, owned, name):
    response = client.get(owned[name])
    if name in SHARE_REACHABLE:
        assert response.status_code == 404
        return
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))


@pytest.mark.parametrize("name", ["home", *OWNER_VIEWS])
def test_unenrolled_patient_is_sent_to_enrolment(client, unenrolled_patient, owned, name):
    client.force_login(unenrolled_patient)
    response = client.get(owned[name])
    assert response.status_code == 302
    assert response.url == reverse("mfa_activate_totp")


def test_dates_in_cards_use_iso_datetime_attribute(patient_client, ct_study):
    html = patient_client.get(reverse("vault:home")).content.decode()
    assert f'datetime="{date(2004, 1, 19).isoformat()}"' in html


# --- in a real browser ---------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_home_works_on_a_phone_with_thumbnails_and_no_csp_errors(
    page, live_server, patient, client, cd_studies, tmp_path
):
    from tests.browser.test_upload_browser import sign_in

    ingest_path(patient, get_testdata_file("CT_small.dcm"))
    ingest_path(patient, make_pdf(tmp_path), filename="Discharge letter.pdf")
    complaints = []
    page.on("console", lambda message: complaints.append(message.text))
    page.goto("/")
    sign_in(page, patient, client)

    for width, height in [(1280, 900), (390, 844)]:
        page.set_viewport_size({"width": width, "height": height})
        page.goto("/vault/")
        for card in page.locator(".study-card").all():
            card.scroll_into_view_if_needed()  # thumbnails load lazily, as they come into view
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(tmp_path / f"vault-home-{width}.png"), full_page=True)
        # Nothing wider than the screen: no sideways scrolling on a phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        # Every thumbnail (a rendered PNG or a modality icon) actually loaded.
        broken = page.evaluate(
            "[...document.querySelectorAll('.study-card img')]"
            ".filter(img => !img.complete || img.naturalWidth === 0).length"
        )
        assert broken == 0
    cards = page.locator(".study-card")
    assert cards.count() == 8
    first, second = cards.nth(0).bounding_box(), cards.nth(1).bounding_box()
    assert second["y"] >= first["y"] + first["height"]  # stacked on a phone
    assert page.get_by_text("Discharge letter.pdf").is_visible()

    page.get_by_label("Kind of scan").select_option("X-ray")
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state("networkidle")
    assert page.locator(".study-card").count() == 1

    page.locator(".study-card-title a").first.click()
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(tmp_path / "vault-study-390.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.get_by_text("Technical details").click()
    assert page.get_by_text("Study Instance UID").is_visible()
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(tmp_path / "vault-study-1280.png"), full_page=True)
    assert not [text for text in complaints if "Content Security Policy" in text], complaints
    print("screenshots in", tmp_path)


def test_names_and_body_parts_read_naturally():
    from phr.vault.browse import body_part_words, person_name

    assert person_name("DOE^JOHN^Q^DR") == "Dr John Q Doe"
    assert person_name("CompressedSamples^CT1") == "CT1 CompressedSamples"
    assert person_name("") == ""
    assert body_part_words("CSPINE") == "Neck (cervical spine)"
    assert body_part_words("KNEE") == "Knee"


def test_multi_frame_series_shows_its_frame_count(patient_client, patient):
    study = ingest_path(patient, get_testdata_file("examples_ybr_color.dcm")).study
    html = patient_client.get(reverse("vault:study", args=[study.id])).content.decode()
    assert "1 image (30 frames)" in html
    assert "Ultrasound" in html


def test_a_search_that_matches_nothing_offers_no_download(patient_client, ct_study):
    home = reverse("vault:home")
    page = patient_client.get(home, {"q": "no study is called this"}).content.decode()
    assert "(ZIP)" not in page
    assert "(ZIP)" in patient_client.get(home).content.decode()
