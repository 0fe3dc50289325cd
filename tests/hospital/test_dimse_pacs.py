"""What a PACS administrator expects of a DICOM node (issue 17, part 2): every storage class,
refusals logged with their reason, DICOM TLS, storage commitment, and association limits that
keep one hospital from crowding out the others. dcmtk's storescu and pynetdicom are the PACS."""

import logging
import subprocess
import threading

import pydicom
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_context, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StorageCommitmentPushModel,
)

from phr.hospital import commitment
from phr.hospital.dimse import DepositListener, tls_context
from phr.hospital.models import DicomNode
from phr.vault.models import Instance
from tests.hospital.conftest import NODE_AE, settle, storescu

pytestmark = pytest.mark.django_db(transaction=True)

RETIRED_ULTRASOUND = "1.2.840.10008.5.1.4.1.1.6"  # Ultrasound Image Storage (Retired)
PRIVATE_CLASS = "1.3.6.1.4.1.9590.100.1.2.999"  # a vendor's own class, not in the standard


def with_class(tmp_path, sop_class: str) -> str:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / f"{sop_class}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return str(path)


# --- every storage class ------------------------------------------------------------------------


def test_a_retired_class_is_stored(listener, patient, node, deposit, tmp_path):
    _row, code = deposit
    path = with_class(tmp_path, RETIRED_ULTRASOUND)

    # -R: propose only the class and transfer syntax of the file itself, as many PACS do.
    done = storescu(listener, code, path, options=["-R"])

    assert done.returncode == 0, done.stderr
    assert Instance.objects.get(owner=patient).sop_class_uid == RETIRED_ULTRASOUND


def test_a_private_class_is_stored(listener, patient, node, deposit, tmp_path):
    # storescu won't send a class it doesn't know ("unknown storage SOP class"): pynetdicom is
    # the PACS here, proposing the vendor's class as a vendor's PACS does.
    _row, code = deposit
    dataset = pydicom.dcmread(with_class(tmp_path, PRIVATE_CLASS))
    assoc = associate(listener, code, [build_context(PRIVATE_CLASS, ExplicitVRLittleEndian)])
    assert assoc.is_established
    status = assoc.send_c_store(dataset)
    assoc.release()
    settle(listener)

    assert status.Status == 0x0000
    assert Instance.objects.get(owner=patient).sop_class_uid == PRIVATE_CLASS


def associate(listener, code, contexts, handlers=(), ae_title=NODE_AE):
    ae = AE(ae_title=ae_title)
    ae.requested_contexts = contexts
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=code, evt_handlers=list(handlers))
    return assoc


def test_refused_contexts_are_logged_with_their_reason(listener, node, deposit, caplog):
    _row, code = deposit
    caplog.set_level(logging.WARNING, logger="phr.hospital.dimse")
    unreadable = build_context(CTImageStorage, ["1.2.3.4.5.6.7"])  # a private transfer syntax
    find = build_context(PatientRootQueryRetrieveInformationModelFind)

    assoc = associate(listener, code, [find, unreadable])
    assert assoc.is_established
    assoc.release()
    settle(listener)

    text = caplog.text
    assert "Patient Root Query/Retrieve Information Model - FIND" in text
    assert "a service we don't offer" in text
    assert "CT Image Storage" in text and "no transfer syntax we can read" in text


# --- DICOM TLS ----------------------------------------------------------------------------------


def make_certificate(folder, name: str) -> tuple[str, str]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.fixture
def tls_listener(tmp_path):
    cert, key = make_certificate(tmp_path, "vault")
    client_cert, client_key = make_certificate(tmp_path, "pacs")
    listener = DepositListener(ssl_context=tls_context(cert, key, ca=client_cert))
    _host, listener.port = listener.start("127.0.0.1", 0)
    listener.certificate = cert
    listener.client = (client_key, client_cert)
    yield listener
    listener.stop(grace=10)


def test_storescu_sends_over_dicom_tls(tls_listener, patient, node, deposit):
    _row, code = deposit
    client_key, client_cert = tls_listener.client
    tls = ["+tls", client_key, client_cert, "+cf", tls_listener.certificate]

    done = storescu(tls_listener, code, get_testdata_file("CT_small.dcm"), options=tls)

    assert done.returncode == 0, done.stderr
    assert Instance.objects.filter(owner=patient).count() == 1


@pytest.mark.parametrize(
    "how",
    [
        pytest.param([], id="plain DIMSE"),
        pytest.param(["+tla", "+cf", "CERT"], id="TLS without the node's certificate"),
    ],
)
def test_a_tls_listener_refuses_what_is_not_mutual_tls(tls_listener, patient, node, deposit, how):
    _row, code = deposit
    options = [tls_listener.certificate if part == "CERT" else part for part in how]

    done = storescu(tls_listener, code, get_testdata_file("CT_small.dcm"), options=options)

    assert done.returncode != 0
    assert not Instance.objects.exists()


def test_the_command_refuses_half_a_tls_setting(tmp_path):
    cert, _key = make_certificate(tmp_path, "vault")
    with pytest.raises(CommandError, match="both --tls-cert and --tls-key"):
        call_command("dicom_listener", "--port", "0", "--tls-cert", cert)
    with pytest.raises(CommandError, match="could not start"):
        call_command("dicom_listener", "--port", "0", "--tls-cert", cert, "--tls-key", cert)


# --- storage commitment -------------------------------------------------------------------------


def test_storage_commitment_reports_what_is_held_and_what_is_not(listener, patient, node, deposit):
    _row, code = deposit
    sent = storescu(listener, code, get_testdata_file("CT_small.dcm"))
    assert sent.returncode == 0, sent.stderr
    held = Instance.objects.get(owner=patient)
    never_sent = generate_uid()

    reports = []
    arrived = threading.Event()

    def on_report(event):
        reports.append((event.event_type, event.event_information))
        arrived.set()
        return 0x0000, None

    context = build_context(
        StorageCommitmentPushModel, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    )
    assoc = associate(listener, code, [context], [(evt.EVT_N_EVENT_REPORT, on_report)])
    assert assoc.is_established
    request = Dataset()
    request.TransactionUID = transaction = generate_uid()
    request.ReferencedSOPSequence = [
        commitment._reference(held.sop_class_uid, held.sop_instance_uid),
        commitment._reference(CTImageStorage, never_sent),
    ]
    status, _reply = assoc.send_n_action(
        request, commitment.REQUEST_COMMITMENT, StorageCommitmentPushModel,
        commitment.COMMITMENT_INSTANCE,
    )  # fmt: skip
    assert status.Status == 0x0000
    assert arrived.wait(30), "no N-EVENT-REPORT on the association"
    assoc.release()
    settle(listener)

    event_type, information = reports[0]
    assert event_type == commitment.SOME_FAILED
    assert information.TransactionUID == transaction
    assert [i.ReferencedSOPInstanceUID for i in information.ReferencedSOPSequence] == [
        held.sop_instance_uid
    ]
    failed = information.FailedSOPSequence
    assert [(i.ReferencedSOPInstanceUID, i.FailureReason) for i in failed] == [
        (never_sent, commitment.NO_SUCH_OBJECT)
    ]


def test_a_commitment_request_without_references_is_refused(listener, node, deposit):
    _row, code = deposit
    context = build_context(StorageCommitmentPushModel)
    assoc = associate(listener, code, [context])
    request = Dataset()
    request.TransactionUID = generate_uid()
    status, _reply = assoc.send_n_action(
        request, commitment.REQUEST_COMMITMENT, StorageCommitmentPushModel,
        commitment.COMMITMENT_INSTANCE,
    )  # fmt: skip
    assoc.release()
    settle(listener)
    assert status.Status == commitment.MISSING_ATTRIBUTE


# --- association limits -------------------------------------------------------------------------


@pytest.fixture
def small_listener():
    listener = DepositListener(max_associations=2, per_hospital=1)
    _host, listener.port = listener.start("127.0.0.1", 0)
    yield listener
    listener.stop(grace=10)


def test_one_hospital_cannot_take_every_association(
    small_listener, patient, hospital, other_hospital, deposit
):
    DicomNode.objects.create(organisation=hospital, ae_title=NODE_AE, network="127.0.0.0/8")
    DicomNode.objects.create(
        organisation=other_hospital, ae_title="ELSEWHERE", network="127.0.0.0/8"
    )
    _row, code = deposit
    echo = build_context("1.2.840.10008.1.1")

    first = associate(small_listener, code, [echo])
    assert first.is_established
    # The same hospital's second association waits: it has its share.
    second = associate(small_listener, code, [echo])
    assert second.is_rejected
    assert refusal(second) == (0x02, 0x03, 0x02)  # transient: local limit exceeded
    # Another hospital still gets in; then the listener is full for everyone.
    other = associate(small_listener, code, [echo], ae_title="ELSEWHERE")
    assert other.is_established
    third = associate(small_listener, code, [echo], ae_title="ELSEWHERE")
    assert third.is_rejected
    assert refusal(third) == (0x02, 0x03, 0x02)
    for assoc in (first, other):
        assoc.release()
    settle(small_listener)
    # Once they end, there is room again.
    again = storescu(small_listener, code, get_testdata_file("CT_small.dcm"))
    assert again.returncode == 0, again.stderr


def refusal(assoc) -> tuple[int, int, int]:
    answer = assoc.acceptor.primitive
    return answer.result, answer.result_source, answer.diagnostic
