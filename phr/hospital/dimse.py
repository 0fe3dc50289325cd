"""DIMSE push (C-STORE, C-ECHO) on top of the deposit rules: the twin of STOW-RS.

A hospital's PACS sends to us with the patient's deposit code as the Called AE title, from a
DicomNode registered for its organisation (calling AE title + source network). Anything else is
turned away at association time with an A-ASSOCIATE-RJ, before a single image is sent.

Each association is one delivery: every C-STORE goes through the vault's ingest service into
the patient's Inbox, and the patient gets one email when the association ends.

pynetdicom runs each association in its own thread, so each one has its own database
connection: we check it before each request (as Django does per HTTP request) and close it when
the association ends.
"""

import ipaddress
import logging
import socket
import threading
import time

from django.core.files import File
from django.db import close_old_connections, connections
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import Verification

from phr.hospital import dimse_speedups, services, stow
from phr.hospital.services import DeliveryReport, DepositRefused
from phr.hospital.spare_files import SpareFiles
from phr.vault.ingest import IngestFailure, Outcome

log = logging.getLogger(__name__)

AE_TITLE = "PHR-VAULT"

# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 9.3.4.
CALLING_AE_NOT_RECOGNISED = (0x01, 0x01, 0x03)  # permanent: no such node from this address
CALLED_AE_NOT_RECOGNISED = (0x01, 0x01, 0x07)  # permanent: no such code for this sender
TRY_LATER = (0x02, 0x01, 0x01)  # transient, no reason given: rate limited, or we are unwell
REFUSALS = {
    # Wrong, expired, revoked and "another organisation's" codes look the same from outside.
    DepositRefused.UNKNOWN_CODE: CALLED_AE_NOT_RECOGNISED,
    DepositRefused.NOT_ALLOWED: CALLED_AE_NOT_RECOGNISED,
    DepositRefused.RATE_LIMITED: TRY_LATER,
}

# C-STORE statuses, PS3.4 Annex B.2.3; the same codes STOW-RS reports as FailureReason.
SUCCESS = 0x0000

# How long an association may sit silent. pynetdicom only restarts this clock when data
# arrives, and the sender is silent while we store its last image, so it must outlast the
# ingest of the largest file (2 GiB hashed and uploaded to S3), not just a network hiccup.
NETWORK_TIMEOUT = 600
# A sender asks for its association as soon as it connects; a connection that says nothing (a
# port scan, a load balancer's health check) holds a thread this long, not pynetdicom's 30 s.
ACSE_TIMEOUT = 10
# dcmtk's largest PDU. Measured with storescu, 16 KiB (pynetdicom's default) and 1 MiB PDUs
# gave the same rate; larger ones only mean fewer fragments to reassemble for other senders.
MAX_PDU_SIZE = 128 * 1024


def make_ae() -> AE:
    ae = AE(ae_title=AE_TITLE)
    # Every storage SOP class, in whatever transfer syntax the sender already has: we keep the
    # bytes as they come (compressed or not) and never transcode.
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.network_timeout = NETWORK_TIMEOUT
    ae.acse_timeout = ACSE_TIMEOUT
    ae.maximum_pdu_size = MAX_PDU_SIZE
    return ae


class ReceivedDataset(File):
    """pynetdicom's temp file of one received dataset, as received (preamble, DICM, file meta,
    the data set in the negotiated transfer syntax). It is ours to consume: pynetdicom deletes
    whatever is left when the handler returns. So a file-system vault may move it into place
    (blobs.store) instead of copying half a megabyte per image."""

    def __init__(self, path):
        super().__init__(open(path, "r+b"), name=str(path))  # noqa: SIM115 (closed with self)

    def temporary_file_path(self) -> str:
        return self.name


def peer_address(assoc) -> str:
    """The sender's IP; an IPv4 peer of a dual-stack listener is shown as IPv4, as registered."""
    address = assoc.requestor.address
    try:
        mapped = getattr(ipaddress.ip_address(address), "ipv4_mapped", None)
    except ValueError:
        return address
    return str(mapped) if mapped else address


class DepositListener:
    """A Storage + Verification SCP whose associations are deposits into patients' Inboxes."""

    def __init__(self, site_url: str = ""):
        self.site_url = site_url  # makes the Inbox link in the patient's email absolute
        self.ae = make_ae()
        self.server = None
        self.spare_files = None
        # Association -> (DeliveryReport, who sent it), while the association lasts.
        self._reports: dict = {}
        self._lock = threading.Lock()

    def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen in a background thread; returns the bound (host, port)."""
        # Each received dataset goes straight to a temp file as its fragments arrive, instead of
        # being gathered in memory: a 2 GiB multi-frame image costs 2 GiB of disk, not 2 GiB of
        # the listener's RAM per association (and twice that to join it into a Part 10 byte
        # string). Measured on the synthetic CT it costs ~1 ms per image (about 245 instead of
        # 310 images/s with a no-op handler; ingest itself takes ~5 ms), a price worth paying.
        # The file lands in the process's temp folder (dicom_listener points it at
        # FILE_UPLOAD_TEMP_DIR) and is ours alone, so ingest may zero its preamble in place.
        _config.STORE_RECV_CHUNKED_DATASET = True
        # pynetdicom's per-PDU debug handlers format every PDU even when nobody logs them.
        _config.LOG_HANDLER_LEVEL = "none"
        handlers = [
            (evt.EVT_CONN_OPEN, self._on_connect),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_RELEASED, self._on_end),
            (evt.EVT_ABORTED, self._on_end),
            (evt.EVT_REJECTED, self._on_end),
        ]
        # The temp files of received datasets are created ahead of need (spare_files.py).
        self.spare_files = SpareFiles()
        self.spare_files.install()
        try:
            self.server = self.ae.start_server((host, port), block=False, evt_handlers=handlers)
        except BaseException:
            self._drop_spare_files()
            raise
        return self.server.server_address[:2]

    def stop(self, grace: float = 30.0) -> None:
        """Stop accepting; give running associations `grace` seconds to finish, then abort."""
        server, self.server = self.server, None
        if server is None:
            return
        running = server.active_associations
        server.shutdown()
        deadline = time.monotonic() + grace
        for assoc in running:
            assoc.join(max(0.0, deadline - time.monotonic()))
        for assoc in running:
            if assoc.is_alive():
                assoc.abort()
        self.sweep()
        self._drop_spare_files()

    def _drop_spare_files(self) -> None:
        if self.spare_files is not None:
            self.spare_files.uninstall()
            self.spare_files = None

    def sweep(self) -> None:
        """Finish deliveries whose association thread died without an ending event (pynetdicom
        ends silently when its network thread fails), so the patient still gets the email."""
        with self._lock:
            gone = [assoc for assoc in self._reports if not assoc.is_alive()]
        for assoc in gone:
            self._finish(assoc, "ended")

    # --- event handlers ------------------------------------------------------------------------

    def _on_connect(self, event) -> None:
        # Nagle's algorithm holds back a small segment while earlier data is unacknowledged,
        # and the sender delays its ACK (up to 40 ms on Linux): a C-STORE response written in
        # two pieces would then wait ~40 ms per image (what holds Orthanc to 18 images/s with
        # its defaults). pynetdicom writes each PDU at once today; this keeps it so.
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # pynetdicom's own per-image work, done faster (phr/hospital/dimse_speedups.py).
        dimse_speedups.install(event.assoc)

    def _on_requested(self, event) -> None:
        assoc = event.assoc
        admitted, refusal = None, TRY_LATER
        try:
            close_old_connections()
            admitted, refusal = self._admit(assoc)
        except Exception:
            # If this handler raised, pynetdicom would go on and accept: never fail open.
            log.exception("DICOM association refused: it could not be checked")
        if refusal is None:
            with self._lock:
                self._reports[assoc] = admitted
            return
        # What pynetdicom itself does to reject: queue the A-ASSOCIATE-RJ, then wait (kill)
        # until it is sent and the connection closed.
        assoc.acse.send_reject(*refusal)
        assoc.kill()
        connections.close_all()

    def _admit(self, assoc) -> tuple[tuple[DeliveryReport, str] | None, tuple | None]:
        request = assoc.requestor.primitive
        calling = (request.calling_ae_title or "").strip()
        address = peer_address(assoc)
        organisation = services.node_organisation(calling, address)
        if organisation is None:
            # The code is not even looked at, so an unknown node can't use us to guess codes.
            log.warning(
                "DICOM association refused: %r from %s is no registered node", calling, address
            )
            return None, CALLING_AE_NOT_RECOGNISED
        try:
            deposit = services.open_deposit(request.called_ae_title or "", organisation, address)
        except DepositRefused as refused:
            # The called AE title is a patient's code (or a guess at one): never logged.
            log.warning(
                "DICOM association refused: %s (%s from %s): %s",
                organisation,
                calling,
                address,
                refused.reason,
            )
            return None, REFUSALS[refused.reason]
        who = f"{organisation} ({calling} from {address}), deposit {deposit.pk}"
        return (DeliveryReport(deposit=deposit, organisation=organisation), who), None

    def _on_store(self, event) -> int:
        with self._lock:
            report, who = self._reports.get(event.assoc, (None, ""))
        if report is None:  # the association was refused; pynetdicom should not get here
            return stow.PROCESSING_FAILURE
        close_old_connections()
        name = f"{event.request.AffectedSOPInstanceUID}.dcm"
        try:
            with ReceivedDataset(event.dataset_path) as fileobj:
                result = services.receive_file(report, fileobj, name)
        except IngestFailure as error:
            log.warning("DICOM store from %s failed, may be retried: %s", who, error)
            return stow.OUT_OF_RESOURCES
        if result.outcome in (Outcome.STORED, Outcome.DUPLICATE):
            return SUCCESS
        if result.outcome == Outcome.CONFLICT:
            return stow.COERCED_OR_KEPT_ASIDE
        log.warning("DICOM store from %s refused: %s (%s)", who, result.code, result.message)
        return stow.CANNOT_UNDERSTAND

    def _on_end(self, event) -> None:
        self._finish(event.assoc, event.event.name.removeprefix("EVT_").lower())
        if threading.current_thread() is event.assoc:
            connections.close_all()

    def _finish(self, assoc, how: str) -> None:
        with self._lock:
            report, who = self._reports.pop(assoc, (None, ""))
        if report is None:
            return
        counts = dict(report.outcomes)
        log.info("DICOM association %s: %s: %s", how, who, counts or "no images")
        try:
            services.finish_delivery(report, site_url=self.site_url)
        except Exception:
            log.exception("could not finish the delivery from %s", who)
