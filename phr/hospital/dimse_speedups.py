"""pynetdicom's per-image work on an accepted association, done the listener's faster way.

A sender such as storescu sends one image, waits for our answer, then sends the next, so every
millisecond spent between an image's last byte and our answer's first is lost for every image.
Timed per step on the 300-slice CT (bench/push.py), three of pynetdicom's habits cost ~1.5-2 ms
of the ~8 ms an image took, beside the ~3-4 ms of our own ingest:

  - it reads each PDU 4 KiB per recv() into a growing bytearray (`read_exactly` instead);
  - its connection thread polls: "is a PDU waiting?" without waiting, then a 1 ms sleep
    whenever the answer is no (`PromptSocket` waits in select() instead);
  - it builds each C-STORE answer as a pydicom dataset and encodes it, ~0.5-1 ms for 90 bytes
    (`store_response_command` writes the same bytes directly).

`install` applies them to one association as it opens. They lean on pynetdicom internals
(`AssociationSocket`, `dul._run_loop_delay`, `dul.send_pdu`, `dimse.send_msg`).
tests/hospital/test_dimse.py compares the answers byte for byte with pynetdicom's own encoder,
and every association there (dcmtk's storescu and echoscu) runs through all three, so an
upgrade that changes them fails there rather than in a hospital.
"""

import contextlib
import select
import socket
import ssl
import struct

from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket

# How long the connection's thread waits for a PDU, or for something to send, before it checks
# pynetdicom's timers and stop flag again: the 1 ms pynetdicom itself polls at.
IDLE_WAIT_SECONDS = 0.001

C_STORE_RSP_COMMAND_FIELD = 0x8001
NO_DATA_SET = 0x0101
# A P-DATA value's message control header: a command fragment, and the last one (PS3.8 E.2).
LAST_COMMAND_FRAGMENT = b"\x03"


def install(assoc) -> None:
    """Make an accepted association's connection prompt, and its C-STORE answers cheap."""
    PromptSocket.adopt(assoc.dul.socket, assoc.dul)
    send_any = assoc.dimse.send_msg

    def send_msg(primitive, context_id: int) -> None:
        command = store_response_command(primitive)
        if command is None:
            send_any(primitive, context_id)
            return
        # pynetdicom would also trigger EVT_DIMSE_SENT here: the listener binds no handler to it.
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, LAST_COMMAND_FRAGMENT + command))
        assoc.dul.send_pdu(pdata)

    assoc.dimse.send_msg = send_msg


def read_exactly(sock: socket.socket, size: int) -> bytearray:
    """`size` bytes from `sock`, or fewer if the peer closed the connection (as pynetdicom's own
    reader does: its caller treats a short read as a broken connection)."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:])
        if not count:
            return buffer[:received]
        received += count
    return buffer


class PromptSocket(AssociationSocket):
    """pynetdicom's connection, made to wake the moment there is work instead of polling.

    pynetdicom's connection thread (the DUL) asks "is a PDU waiting?" without waiting, and
    sleeps 1 ms whenever the answer is no. Here the question waits instead, in select(), until
    a PDU arrives or the association has queued something to send (`wake`), for at most
    IDLE_WAIT_SECONDS, so an idle association costs what it did before.
    """

    @classmethod
    def adopt(cls, transport: AssociationSocket, dul) -> None:
        transport.__class__ = cls
        transport._wake_receiver, transport._wake_sender = socket.socketpair()
        transport._wake_receiver.setblocking(False)
        transport._wake_sender.setblocking(False)  # a wake-up never blocks the sending thread
        # The wait in `ready` is the loop's pause now; pynetdicom's own sleep would add to it.
        dul._run_loop_delay = 0
        queue_primitive = dul.send_pdu

        def send_pdu(primitive) -> None:
            queue_primitive(primitive)
            transport.wake()

        dul.send_pdu = send_pdu

    @property
    def ready(self) -> bool:
        if self.socket is None or self._is_connected is False:
            return False
        # DICOM TLS: bytes already decrypted wait in the SSL object, where select() can't see
        # them (pynetdicom checks the same).
        if isinstance(self.socket, ssl.SSLSocket) and self.socket.pending():
            return True
        try:
            readable, _, _ = select.select(
                [self.socket, self._wake_receiver], [], [], IDLE_WAIT_SECONDS
            )
        except (OSError, ValueError):
            self.event_queue.put("Evt17")  # as pynetdicom does: the connection is gone
            return False
        if self._wake_receiver in readable:
            self._drain_wake_ups()
        return self.socket in readable

    def wake(self) -> None:
        """Interrupt the wait in `ready`: a primitive was queued for sending."""
        # Closed (the association has ended), or already full of unread wake-ups: either way
        # there is nothing more to do.
        with contextlib.suppress(OSError):
            self._wake_sender.send(b"\0")

    def _drain_wake_ups(self) -> None:
        with contextlib.suppress(OSError):  # nothing left (BlockingIOError), or closed
            while self._wake_receiver.recv(4096):
                pass

    def recv(self, nr_bytes: int) -> bytearray:
        return read_exactly(self.socket, nr_bytes)

    def close(self) -> None:
        super().close()
        self._wake_receiver.close()
        self._wake_sender.close()


def store_response_command(primitive) -> bytes | None:
    """The command set of a plain C-STORE answer (PS3.7 9.3.1.2), encoded as every command set
    is (implicit VR little endian, PS3.7 6.3.1); None for anything else, or for an answer that
    carries more than its status (an error comment, an offending element), which pynetdicom
    then encodes itself."""
    if not isinstance(primitive, C_STORE) or primitive.MessageIDBeingRespondedTo is None:
        return None
    extras = (
        primitive.ErrorComment,
        primitive.OffendingElement,
        primitive.MoveOriginatorApplicationEntityTitle,
        primitive.MoveOriginatorMessageID,
        primitive.DataSet,
    )
    if any(extra is not None for extra in extras):
        return None
    required = (primitive.Status, primitive.AffectedSOPClassUID, primitive.AffectedSOPInstanceUID)
    if any(value is None for value in required):
        return None
    elements = b"".join(
        (
            _uid(0x0002, primitive.AffectedSOPClassUID),
            _unsigned_short(0x0100, C_STORE_RSP_COMMAND_FIELD),
            _unsigned_short(0x0120, primitive.MessageIDBeingRespondedTo),
            _unsigned_short(0x0800, NO_DATA_SET),
            _unsigned_short(0x0900, primitive.Status),
            _uid(0x1000, primitive.AffectedSOPInstanceUID),
        )
    )
    group_length = struct.pack("<HHIL", 0x0000, 0x0000, 4, len(elements))
    return group_length + elements


def _unsigned_short(element: int, value: int) -> bytes:
    return struct.pack("<HHIH", 0x0000, element, 2, value)


def _uid(element: int, uid) -> bytes:
    value = str(uid).encode("ascii")
    if len(value) % 2:
        value += b"\0"  # UIs are padded to an even length with a NUL (PS3.5 9.1)
    return struct.pack("<HHI", 0x0000, element, len(value)) + value
