"""The demo patient's vault: filled from pydicom's bundled images (a real CD, plus one file per
encoding the viewer must decode), through the ingest service, and only once however often the
demo is set up."""

from pydicom import dcmread
from pydicom.fileset import FileSet
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    RLELossless,
)

from phr.demo.seeding import (
    DEMO_HOSPITAL,
    demo_cd_tree,
    demo_files,
    ensure_demo_patient,
    fill_demo_vault,
)
from phr.vault.models import Document, Instance, Series, Source, Study


def expected_study_uids() -> set[str]:
    """From the CD's own DICOMDIRs and the files' headers: an oracle that isn't our ingest."""
    tree = demo_cd_tree()
    uids = set()
    for dicomdir in (tree / "DICOMDIR", tree / "TINY_ALPHA" / "DICOMDIR"):
        uids.update(FileSet(dicomdir).find_values("StudyInstanceUID"))
    for path in demo_files():
        header = dcmread(path, stop_before_pixels=True)
        if "StudyInstanceUID" in header:  # JPEGLSNearLossless_16.dcm has none: ingest refuses it
            uids.add(header.StudyInstanceUID)
    return uids


def vault_state(user) -> dict:
    return {
        "studies": sorted(
            Study.objects.filter(owner=user).values_list("study_instance_uid", "num_instances")
        ),
        "series": Series.objects.filter(study__owner=user).count(),
        "instances": sorted(
            Instance.objects.filter(owner=user).values_list(
                "sop_instance_uid", "sha256", "is_conflict"
            )
        ),
        "documents": Document.objects.filter(owner=user).count(),
    }


def test_demo_vault_holds_the_cd_and_the_encodings(db):
    user = ensure_demo_patient().user

    studies = Study.objects.filter(owner=user, inbox=False)
    assert {study.study_instance_uid for study in studies} == expected_study_uids()
    assert all(study.source == Source.IMPORT for study in studies)
    # And one study "sent by a hospital" waits in the Inbox, to try Accept and Reject on.
    [waiting] = Study.objects.filter(owner=user, inbox=True)
    assert waiting.source == Source.HOSPITAL and str(waiting.deposited_by) == DEMO_HOSPITAL
    syntaxes = set(
        Instance.objects.filter(owner=user, series__study__inbox=False).values_list(
            "transfer_syntax_uid", flat=True
        )
    )
    assert {
        JPEG2000,
        JPEGBaseline8Bit,
        JPEGExtended12Bit,
        RLELossless,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
    } <= syntaxes
    # MR_small comes in three encodings with one SOP Instance UID: all kept, two flagged.
    mr = dcmread(next(path for path in demo_files() if path.name == "MR_small.dcm"))
    copies = Instance.objects.filter(owner=user, sop_instance_uid=mr.SOPInstanceUID)
    assert copies.count() == 3
    assert copies.filter(is_conflict=True).count() == 2


def test_setting_up_the_demo_twice_changes_nothing(db):
    user = ensure_demo_patient().user
    before = vault_state(user)

    assert ensure_demo_patient().user == user
    assert vault_state(user) == before

    again = fill_demo_vault(user)
    assert again.counts["stored"] == again.counts["conflict"] == 0
    in_vault = Instance.objects.filter(owner=user, series__study__inbox=False).count()
    assert again.counts["duplicate"] == in_vault
