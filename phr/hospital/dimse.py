"""DIMSE push (C-STORE, C-ECHO, storage commitment) on top of the deposit rules: the twin of
STOW-RS.

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
import ssl
import threading
import time

from django.conf import settings
from django.core.files import File
from django.db import close_old_connections, connections
from pydicom.uid import UID
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, _config, evt
from pynetdicom import sop_class as known_classes
from pynetdicom.sop_class import _STORAGE_CLASSES as STORAGE_CLASSES
from pynetdicom.sop_class import StorageCommitmentPushModel, Verification

from phr.hospital import commitment, dimse_speedups, services, stow
from phr.hospital.services import DeliveryReport, DepositRefused
from phr.hospital.spare_files import SpareFiles
from phr.vault.ingest import IngestFailure, Outcome

log = logging.getLogger(__name__)

AE_TITLE = "PHR-VAULT"

# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 9.3.4.
CALLING_AE_NOT_RECOGNISED = (0x01, 0x01, 0x03)  # permanent: no such node from this address
CALLED_AE_NOT_RECOGNISED = (0x01, 0x01, 0x07)  # permanent: no such code for this sender
TRY_LATER = (0x02, 0x01, 0x01)  # transient, no reason given: rate limited, or we are unwell
TOO_MANY_ASSOCIATIONS = (0x02, 0x03, 0x02)  # transient, local limit exceeded
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


# The transfer syntaxes we can read, and so keep: the standard ones (pynetdicom's list).
READABLE_SYNTAXES = frozenset(ALL_TRANSFER_SYNTAXES)
# A-ASSOCIATE-AC presentation context results (PS3.8 9.3.3.2), for the log.
CONTEXT_RESULTS = {
    0x01: "refused by us",
    0x02: "refused, no reason",
    0x03: "a service we don't offer",
    0x04: "none of its transfer syntaxes is one we can read",
}


def make_ae(max_associations: int) -> AE:
    """Every storage SOP class (standard, retired, private: pynetdicom's unrestricted storage
    service, set in DepositListener.start), Verification and Storage Commitment."""
    ae = AE(ae_title=AE_TITLE)
    ae.add_supported_context(Verification)
    ae.add_supported_context(StorageCommitmentPushModel)
    ae.network_timeout = NETWORK_TIMEOUT
    ae.acse_timeout = ACSE_TIMEOUT
    ae.maximum_pdu_size = MAX_PDU_SIZE
    # Ours is the limit that counts (DepositListener._admit, which logs it); pynetdicom's, one
    # above, only backs it up.
    ae.maximum_associations = max_associations + 1
    return ae


def tls_context(cert: str, key: str, ca: str = "") -> ssl.SSLContext:
    """DICOM TLS (PS3.15 Annex B, BCP 195 profiles): TLS 1.2 or later with the library's
    default ciphers. With `ca`, a node must present a certificate that CA signed (mutual TLS);
    its AE title and network are checked as ever on top."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca:
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def is_storage_like(uid: str) -> bool:
    """What pynetdicom's unrestricted storage service takes as storage: every class but the
    other services it knows (Verification, Query/Retrieve, ...), as its negotiation decides."""
    uid = UID(uid)
    storage_or_unknown = uid in STORAGE_CLASSES.values() or not hasattr(known_classes, uid.keyword)
    return uid.is_private or storage_or_unknown


def prefer_readable_syntaxes(primitive) -> list[str]:
    """Put, in each proposed storage context, the transfer syntaxes we can read first, in the
    sender's order: the unrestricted service accepts a context's first syntax as it stands.
    Returns the classes proposed with none we can read (their images will be refused)."""
    unreadable = []
    for context in primitive.presentation_context_definition_list:
        if not is_storage_like(context.abstract_syntax):
            continue
        syntaxes = list(context.transfer_syntax)
        readable = [ts for ts in syntaxes if ts in READABLE_SYNTAXES]
        if not readable:
            unreadable.append(str(context.abstract_syntax))
        context.transfer_syntax = readable + [ts for ts in syntaxes if ts not in READABLE_SYNTAXES]
    return unreadable


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

    def __init__(
        self,
        site_url: str = "",
        *,
        max_associations: int | None = None,
        per_hospital: int | None = None,
        ssl_context=None,
    ):
        self.site_url = site_url  # makes the Inbox link in the patient's email absolute
        self.max_associations = max_associations or settings.PHR_DICOM_MAX_ASSOCIATIONS
        # No one hospital may take every association: the others still get in.
        self.per_hospital = min(
            per_hospital or settings.PHR_DICOM_MAX_ASSOCIATIONS_PER_HOSPITAL, self.max_associations
        )
        self.ssl_context = ssl_context  # DICOM TLS (PS3.15 Annex B) when set
        self.ae = make_ae(self.max_associations)
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
        # Storage of any SOP class: a PACS sends what it holds, retired and private classes
        # included, and STOW-RS takes them all too.
        _config.UNRESTRICTED_STORAGE_SERVICE = True
        handlers = [
            (evt.EVT_CONN_OPEN, self._on_connect),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_N_ACTION, self._on_commitment),
            (evt.EVT_RELEASED, self._on_end),
            (evt.EVT_ABORTED, self._on_end),
            (evt.EVT_REJECTED, self._on_end),
        ]
        # The temp files of received datasets are created ahead of need (spare_files.py).
        self.spare_files = SpareFiles()
        self.spare_files.install()
        try:
            self.server = self.ae.start_server(
                (host, port), block=False, evt_handlers=handlers, ssl_context=self.ssl_context
            )
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
            for uid in prefer_readable_syntaxes(assoc.requestor.primitive):
                log.warning(
                    "DICOM association %s: %s (%s) proposed in no transfer syntax we can read: "
                    "its images will be refused",
                    admitted[1],
                    UID(uid).name,
                    uid,
                )
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
        admitted = (DeliveryReport(deposit=deposit, organisation=organisation), who)
        with self._lock:  # counted and taken in one step: two associations can't both slip in
            if len(self._reports) >= self.max_associations:
                log.warning("DICOM association refused: %s: %d running, the most we take",
                            who, len(self._reports))  # fmt: skip
                return None, TOO_MANY_ASSOCIATIONS
            theirs = sum(1 for r, _ in self._reports.values() if r.organisation == organisation)
            if theirs >= self.per_hospital:
                log.warning("DICOM association refused: %s: %d of theirs running, the most one "
                            "hospital may have", who, theirs)  # fmt: skip
                return None, TOO_MANY_ASSOCIATIONS
            self._reports[assoc] = admitted
        return admitted, None

    def _on_accepted(self, event) -> None:
        """Log each proposed context we turned down, with the reason: an administrator reads
        this when their PACS says some images "could not be sent"."""
        with self._lock:
            _report, who = self._reports.get(event.assoc, (None, "an association"))
        for context in event.assoc.rejected_contexts:
            uid = UID(context.abstract_syntax)
            log.warning(
                "DICOM association %s: context %s, %s (%s), refused: %s",
                who,
                context.context_id,
                uid.name,
                uid,
                CONTEXT_RESULTS.get(context.result, f"result {context.result}"),
            )

    def _on_commitment(self, event):
        """Storage commitment: answer the N-ACTION at once, then report what we hold."""
        with self._lock:
            report, who = self._reports.get(event.assoc, (None, ""))
        if report is None:
            return stow.PROCESSING_FAILURE, None
        try:
            status, references, transaction = commitment.read_request(
                event.action_type, event.action_information
            )
        except Exception:  # pydicom decodes lazily: a malformed request fails here
            log.warning("storage commitment from %s: unreadable request", who)
            return commitment.MISSING_ATTRIBUTE, None
        if status != commitment.SUCCESS:
            log.warning("storage commitment from %s refused: status 0x%04X", who, status)
            return status, None
        close_old_connections()
        result = commitment.answer(report.deposit.owner, transaction, references)
        commitment.report_after_response(event.assoc, result, who)
        return commitment.SUCCESS, None

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
