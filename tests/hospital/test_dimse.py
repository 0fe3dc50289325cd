"""DIMSE push into a patient's Inbox, with dcmtk's real storescu and echoscu as the hospital.

The listener runs inside the test process on a free loopback port; its association threads use
their own database connections, hence transactional tests.
"""

import hashlib
import io
import os
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.core.files.storage import FileSystemStorage, default_storage
from django.core.management import call_command
from django.db.backends.signals import connection_created
from django.urls import reverse
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.fileset import FileSet
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE

from phr.hospital.dimse import MAX_PDU_SIZE, DepositListener
from phr.hospital.dimse_speedups import read_exactly, store_response_command
from phr.hospital.models import DicomNode
from phr.vault import bundles
from phr.vault.models import Instance, Series, Source, Study
from tests.hospital.conftest import (
    CT_SERIES,
    ECHOSCU,
    NODE_AE,
    STORESCU,
    TRY_LATER,
    UNKNOWN_CODE,
    UNKNOWN_NODE,
    echoscu,
    make_code,
    settle,
    storescu,
)
from tests.support.vaultdata import dicomdir_tree

pytestmark = pytest.mark.django_db(transaction=True)


def cd_contents() -> tuple[set[str], set[str]]:
    """(study UIDs, image UIDs) the CD's own DICOMDIRs list: an oracle independent of ours."""
    tree = dicomdir_tree()
    studies, images = set(), set()
    for dicomdir in (tree / "DICOMDIR", tree / "TINY_ALPHA" / "DICOMDIR"):
        file_set = FileSet(dicomdir)
        studies.update(file_set.find_values("StudyInstanceUID"))
        images.update(instance.SOPInstanceUID for instance in file_set)
    return studies, images


def test_storescu_sends_a_whole_cd_into_the_inbox(listener, patient, hospital, node, deposit):
    _row, code = deposit

    # +sd +r: every file of the CD folder. storescu itself leaves out the DICOMDIRs and the
    # READMEs; -nh: it carries on past any image we refuse, as a PACS would.
    done = storescu(listener, code, dicomdir_tree(), options=["+sd", "+r", "-nh"])

    assert done.returncode == 0, done.stderr
    study_uids, image_uids = cd_contents()
    studies = Study.objects.filter(owner=patient)
    assert {study.study_instance_uid for study in studies} == study_uids
    stored = Instance.objects.filter(owner=patient)
    assert {instance.sop_instance_uid for instance in stored} == image_uids
    assert all(study.inbox for study in studies)
    assert {study.deposited_by for study in studies} == {hospital}
    assert {study.source for study in studies} == {Source.HOSPITAL}
    for instance in stored:
        with default_storage.open(instance.storage_key, "rb") as blob:
            assert hashlib.sha256(blob.read()).hexdigest() == instance.sha256
    if isinstance(default_storage, FileSystemStorage):
        # Moved in from pynetdicom's temp files, yet with the same permissions as any blob.
        modes = {
            stat.S_IMODE(Path(default_storage.path(i.storage_key)).stat().st_mode) for i in stored
        }
        assert modes == {settings.FILE_UPLOAD_PERMISSIONS}
    # One association, one email, however many images it brought.
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [patient.email]
    assert "St Mary's Hospital" in mail.outbox[0].subject


def test_the_code_may_be_typed_with_dashes(listener, patient, node, deposit):
    _row, code = deposit
    typed = f"{code[:4]}-{code[4:8]}-{code[8:]}"

    done = storescu(listener, typed, CT_SERIES, options=["+sd"])

    assert done.returncode == 0, done.stderr
    assert Instance.objects.filter(owner=patient).count() == 4


def test_received_images_leave_nothing_in_the_temp_folder(
    patient, node, deposit, upload_temp_dir, monkeypatch
):
    # As dicom_listener does: received datasets, and the spare files made ahead for them, in
    # the uploads' temp folder.
    monkeypatch.setattr(tempfile, "tempdir", str(upload_temp_dir))
    listener = DepositListener()
    _host, listener.port = listener.start("127.0.0.1", 0)
    try:
        _row, code = deposit
        done = storescu(listener, code, CT_SERIES, options=["+sd"])
        assert done.returncode == 0, done.stderr
        settle(listener)
    finally:
        listener.stop(grace=10)

    assert Instance.objects.filter(owner=patient).count() == len(list(CT_SERIES.iterdir()))
    assert list(upload_temp_dir.iterdir()) == []


def test_resending_stores_nothing_new(listener, patient, node, deposit):
    _row, code = deposit
    assert storescu(listener, code, CT_SERIES, options=["+sd"]).returncode == 0
    before = (Instance.objects.filter(owner=patient).count(), Study.objects.count())
    mail.outbox.clear()

    again = storescu(listener, code, CT_SERIES, options=["+sd"])

    assert again.returncode == 0, again.stderr  # duplicates are a success for the sender
    assert (Instance.objects.filter(owner=patient).count(), Study.objects.count()) == before
    assert mail.outbox == []


@pytest.mark.s3
def test_a_series_sent_in_one_association_has_its_bundle_built(
    s3_storage, listener, patient, node, deposit
):
    _row, code = deposit

    done = storescu(listener, code, CT_SERIES, options=["+sd"])

    assert done.returncode == 0, done.stderr
    # Built as the association ended: the patient's first look at the CT is as quick as the next.
    series = Series.objects.get(study__owner=patient)
    assert series.num_instances >= bundles.MIN_FILES
    assert default_storage.exists(bundles.bundles_of([series.id])[series.id].key)


def test_compressed_images_are_kept_as_sent(listener, patient, node, deposit):
    _row, code = deposit
    original = dcmread(get_testdata_file("JPEG2000.dcm"))

    # -xw: propose JPEG 2000 (lossy or lossless) as well as the uncompressed syntaxes.
    done = storescu(listener, code, get_testdata_file("JPEG2000.dcm"), options=["-xw"])

    assert done.returncode == 0, done.stderr
    instance = Instance.objects.get(owner=patient)
    with default_storage.open(instance.storage_key) as stored:
        kept = dcmread(stored)
    assert kept.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert kept.PixelData == original.PixelData


def test_an_image_we_cannot_index_fails_alone(listener, patient, node, deposit, tmp_path):
    _row, code = deposit
    nameless = dcmread(get_testdata_file("MR_small.dcm"))
    del nameless.StudyInstanceUID  # nothing to file it under
    nameless.save_as(tmp_path / "nameless.dcm")
    good = get_testdata_file("CT_small.dcm")

    done = storescu(listener, code, tmp_path / "nameless.dcm", good, options=["-nh", "-v"])

    assert "Received Store Response (Error: CannotUnderstand)" in done.stderr, done.stderr
    assert [i.sop_instance_uid for i in Instance.objects.filter(owner=patient)] == [
        dcmread(good).SOPInstanceUID
    ]
    assert len(mail.outbox) == 1


def test_echoscu_is_answered(listener, node, deposit):
    _row, code = deposit
    done = echoscu(listener, code)
    assert done.returncode == 0, done.stderr
    assert mail.outbox == []


def test_an_unknown_called_ae_title_is_rejected(listener, patient, node, deposit):
    done = storescu(listener, "ABCDEFGHJKMNP", CT_SERIES, options=["+sd"])

    assert done.returncode != 0
    assert UNKNOWN_CODE in done.stderr
    assert not Instance.objects.exists()
    assert mail.outbox == []


def test_wrong_codes_count_against_the_rate_limit(listener, settings, node, deposit):
    settings.PHR_SHARE_FAILURES_PER_IP_PER_MINUTE = 2
    _row, code = deposit
    for guess in ("ABCDEFGHJKMNP", "BCDEFGHJKMNPQ"):
        assert echoscu(listener, guess).returncode != 0

    # The right code now waits too: this organisation has used up its guesses.
    done = echoscu(listener, code)

    assert done.returncode != 0
    assert TRY_LATER in done.stderr


def test_unknown_nodes_never_get_to_guess_codes(listener, settings, node, deposit):
    settings.PHR_SHARE_FAILURES_PER_IP_PER_MINUTE = 1
    _row, code = deposit
    for guess in ("ABCDEFGHJKMNP", "BCDEFGHJKMNPQ"):
        assert UNKNOWN_NODE in echoscu(listener, guess, aet="SOMEONE_ELSE").stderr

    # Refused before the code was looked at: nothing counted against this address.
    assert echoscu(listener, code).returncode == 0


def test_an_unregistered_calling_ae_title_is_rejected(listener, patient, node, deposit):
    _row, code = deposit
    done = storescu(listener, code, CT_SERIES, aet="SOMEONE_ELSE", options=["+sd"])

    assert done.returncode != 0
    assert UNKNOWN_NODE in done.stderr
    assert not Instance.objects.exists()


def test_a_registered_node_calling_from_another_network_is_rejected(
    listener, patient, hospital, deposit
):
    DicomNode.objects.create(organisation=hospital, ae_title=NODE_AE, network="10.9.9.0/24")
    _row, code = deposit

    done = storescu(listener, code, CT_SERIES, options=["+sd"])

    assert done.returncode != 0
    assert UNKNOWN_NODE in done.stderr
    assert not Instance.objects.exists()


def test_a_node_of_an_inactive_organisation_is_rejected(listener, patient, hospital, node, deposit):
    hospital.is_active = False
    hospital.save()
    _row, code = deposit

    done = echoscu(listener, code)

    assert done.returncode != 0
    assert UNKNOWN_NODE in done.stderr


def test_a_code_for_another_organisation_is_rejected(listener, patient, node, other_hospital):
    _row, code = make_code(patient, organisation=other_hospital)

    done = storescu(listener, code, CT_SERIES, options=["+sd"])

    assert done.returncode != 0
    assert UNKNOWN_CODE in done.stderr
    assert not Instance.objects.exists()
    assert mail.outbox == []


def test_association_threads_close_their_database_connections(listener, node, deposit):
    _row, code = deposit
    opened = []

    def record(sender, connection, **kwargs):
        if threading.current_thread().name.startswith("AcceptorThread"):
            opened.append(connection)

    connection_created.connect(record)
    try:
        assert echoscu(listener, code).returncode == 0
        assert storescu(listener, code, CT_SERIES, options=["+sd"]).returncode == 0
        assert echoscu(listener, "ABCDEFGHJKMNP").returncode != 0
    finally:
        connection_created.disconnect(record)

    assert len(opened) == 3  # one per association, kept for all of its images
    assert all(connection.connection is None for connection in opened)


def run_listener_command(hospital) -> tuple[str, str]:
    """`manage.py dicom_listener` on a free port until `hospital(port)` has done its part and
    the operator sends SIGTERM; returns what the command wrote to stdout and stderr."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def hospital_then_operator():
        try:
            hospital(port)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=hospital_then_operator, daemon=True).start()
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "dicom_listener", "--host", "127.0.0.1", "--port", str(port), stdout=out, stderr=err
    )
    return out.getvalue(), err.getvalue()


def wait_for_echo(port: int, code: str) -> bool:
    """True once the listener answers a C-ECHO (refused until it is up)."""
    command = [ECHOSCU, "-aet", NODE_AE, "-aec", code, "127.0.0.1", str(port)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if subprocess.run(command, capture_output=True, timeout=60).returncode == 0:
            return True
        time.sleep(0.2)
    return False


def test_the_command_serves_until_sigterm(node, deposit):
    _row, code = deposit
    echoed = []
    before = signal.getsignal(signal.SIGTERM)

    out, err = run_listener_command(lambda port: echoed.append(wait_for_echo(port, code)))

    assert echoed == [True]
    assert "DICOM listener on 127.0.0.1:" in out
    assert out.rstrip().endswith("DICOM listener stopped.")
    assert signal.getsignal(signal.SIGTERM) is before
    # No PHR_SITE_URL in the tests' settings: the operator is told what the emails will lack.
    assert "PHR_SITE_URL is not set" in err


def test_the_commands_email_links_to_the_inbox_at_phr_site_url(settings, patient, node, deposit):
    settings.PHR_SITE_URL = "https://vault.example.org"
    _row, code = deposit
    sent = []

    def hospital(port):
        assert wait_for_echo(port, code)
        command = [STORESCU, "+sd", "-aet", NODE_AE, "-aec", code, "127.0.0.1", str(port)]
        sent.append(subprocess.run([*command, str(CT_SERIES)], capture_output=True).returncode)

    _out, err = run_listener_command(hospital)

    assert sent == [0]
    assert "PHR_SITE_URL" not in err
    assert len(mail.outbox) == 1
    assert f"https://vault.example.org{reverse('hospital:inbox')}" in mail.outbox[0].body


def test_deposit_codes_never_reach_the_logs(listener, patient, node, deposit, caplog):
    """A code is a key to a patient's Inbox: neither our log lines nor pynetdicom's may carry
    it, for an accepted association or a refused guess."""
    _row, code = deposit
    with caplog.at_level("DEBUG"):
        assert storescu(listener, code, CT_SERIES, options=["+sd"]).returncode == 0
        storescu(listener, "ABCDEFGHJKMNP", CT_SERIES, options=["+sd"])
    assert "DICOM association" in caplog.text
    assert code not in caplog.text
    assert "ABCDEFGHJKMNP" not in caplog.text


def test_a_pdu_is_read_whole_across_many_small_receives():
    # The listener's replacement for pynetdicom's 4 KiB-at-a-time reader: the same bytes, and a
    # short result when the peer goes away mid-PDU (pynetdicom's cue for a broken connection).
    payload = os.urandom(300_000)
    ours, theirs = socket.socketpair()
    with ours, theirs:

        def trickle():
            for start in range(0, len(payload), 7_001):
                theirs.sendall(payload[start : start + 7_001])
            theirs.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=trickle)
        sender.start()
        assert read_exactly(ours, 200_000) == payload[:200_000]
        assert read_exactly(ours, 200_000) == payload[200_000:]
        sender.join()


@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xB007, 0xC211])
@pytest.mark.parametrize(
    ("message_id", "instance_uid"),
    [(1, "1.2.3.4"), (65535, "1.2.826.0.1.3680043.8.498.1234567890123456789012345678901234")],
)
def test_a_store_answer_is_the_bytes_pynetdicom_would_send(status, message_id, instance_uid):
    # The listener writes its C-STORE answers itself (pydicom took ~1 ms to build 90 bytes):
    # they must stay byte for byte what pynetdicom encodes, odd-length UIDs padded included.
    answer = C_STORE()
    answer.MessageIDBeingRespondedTo = message_id
    answer.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    answer.AffectedSOPInstanceUID = instance_uid
    answer.Status = status
    message = C_STORE_RSP()
    message.primitive_to_message(answer)
    (pdata,) = message.encode_msg(1, MAX_PDU_SIZE)
    ((_context, value),) = pdata.presentation_data_value_list
    assert value == b"\x03" + store_response_command(answer)


def test_an_answer_with_more_than_a_status_is_left_to_pynetdicom():
    answer = C_STORE()
    answer.MessageIDBeingRespondedTo = 1
    answer.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    answer.AffectedSOPInstanceUID = "1.2.3"
    answer.Status = 0xC211
    answer.ErrorComment = "Refused"
    assert store_response_command(answer) is None
    request = C_STORE()  # a request, not an answer
    request.MessageID = 1
    assert store_response_command(request) is None
