"""Storage Commitment Push Model, SCP (PS3.4 Annex J): a PACS asks whether we hold what it sent
(N-ACTION), and we answer with an N-EVENT-REPORT listing what we hold and what we don't.

Many PACS mark a study "sent" only once its commitment is confirmed, and delete their copy only
then: a vault that never answers leaves them retrying forever. We hold an image once its file
is in storage and its row in the patient's vault (ingest writes the blob first).
"""

import logging
import threading
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pynetdicom.dimse_primitives import N_ACTION
from pynetdicom.sop_class import StorageCommitmentPushModel

from phr.vault.models import Instance

log = logging.getLogger(__name__)

# The well-known SOP Instance of the Storage Commitment Push Model (PS3.4 J.3.5).
COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
REQUEST_COMMITMENT = 1  # N-ACTION Action Type ID
ALL_HELD = 1  # N-EVENT-REPORT Event Type IDs: every instance committed,
SOME_FAILED = 2  # or one or more failed
# N-ACTION statuses (PS3.4 J.3.2.1.3 and PS3.7 C.4.4).
SUCCESS = 0x0000
NO_SUCH_ACTION = 0x0123
MISSING_ATTRIBUTE = 0x0120
# Failure Reasons in the Failed SOP Sequence (PS3.4 J.3.3.1.1).
NO_SUCH_OBJECT = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119


@dataclass
class Answer:
    """What to report for one transaction."""

    transaction_uid: str
    held: list[tuple[str, str]] = field(default_factory=list)  # (class UID, instance UID)
    failed: list[tuple[str, str, int]] = field(default_factory=list)  # ... and the reason

    @property
    def event_type(self) -> int:
        return SOME_FAILED if self.failed else ALL_HELD

    def event_information(self) -> Dataset:
        report = Dataset()
        report.TransactionUID = self.transaction_uid
        if self.held:
            report.ReferencedSOPSequence = [_reference(*pair) for pair in self.held]
        if self.failed:
            items = []
            for class_uid, instance_uid, reason in self.failed:
                item = _reference(class_uid, instance_uid)
                item.FailureReason = reason
                items.append(item)
            report.FailedSOPSequence = items
        return report


def _reference(class_uid: str, instance_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = class_uid
    item.ReferencedSOPInstanceUID = instance_uid
    return item


def read_request(action_type: int, information: Dataset | None) -> tuple[int, list | None, str]:
    """(status, [(class UID, instance UID)], transaction UID) of an N-ACTION request: a status
    other than SUCCESS refuses it, with nothing to report."""
    if action_type != REQUEST_COMMITMENT:
        return NO_SUCH_ACTION, None, ""
    transaction = str((information or Dataset()).get("TransactionUID") or "")
    items = (information or Dataset()).get("ReferencedSOPSequence")
    if not transaction or not items:
        return MISSING_ATTRIBUTE, None, ""
    references = [
        (str(item.get("ReferencedSOPClassUID") or ""), str(item.get("ReferencedSOPInstanceUID")))
        for item in items
    ]
    return SUCCESS, references, transaction


def answer(owner, transaction_uid: str, references: list[tuple[str, str]]) -> Answer:
    """Which of `references` the patient's vault holds: by SOP Instance UID, of that class."""
    classes: dict[str, set[str]] = {}
    uids = [uid for _, uid in references]
    held = Instance.objects.filter(owner=owner, sop_instance_uid__in=uids)
    for uid, class_uid in held.values_list("sop_instance_uid", "sop_class_uid"):
        classes.setdefault(uid, set()).add(class_uid)
    result = Answer(transaction_uid)
    for class_uid, uid in references:
        held = classes.get(uid)
        if not held:
            result.failed.append((class_uid, uid, NO_SUCH_OBJECT))
        elif class_uid and class_uid not in held:
            result.failed.append((class_uid, uid, CLASS_INSTANCE_CONFLICT))
        else:
            result.held.append((class_uid, uid))
    return result


def report_after_response(assoc, result: Answer, who: str) -> None:
    """Send the N-EVENT-REPORT once the N-ACTION response has gone, never before: the sender
    waits for that response first, and pynetdicom would let a report sent from the N-ACTION
    handler mix its fragments with it. So the association's send is wrapped, for one message:
    once the response is queued, a thread of its own sends the report (pynetdicom's send_*
    calls wait for the peer's answer, which the association's own thread must not)."""
    send = assoc.dimse.send_msg

    def send_msg(primitive, context_id: int) -> None:
        send(primitive, context_id)
        if isinstance(primitive, N_ACTION) and primitive.is_valid_response:
            assoc.dimse.send_msg = send
            threading.Thread(target=send_report, args=(assoc, result, who), daemon=True).start()

    assoc.dimse.send_msg = send_msg


def send_report(assoc, result: Answer, who: str) -> None:
    """The N-EVENT-REPORT, on the association the request came on."""
    if not assoc.is_established:
        log.warning(
            "storage commitment %s for %s not reported: the sender closed the association "
            "(it must wait for the report on the same association)",
            result.transaction_uid,
            who,
        )
        return
    try:
        status, _reply = assoc.send_n_event_report(
            result.event_information(),
            result.event_type,
            StorageCommitmentPushModel,
            COMMITMENT_INSTANCE,
        )
    except Exception:
        log.exception("storage commitment %s for %s: report failed", result.transaction_uid, who)
        return
    log.info(
        "storage commitment %s for %s: %d held, %d not (answered 0x%04X)",
        result.transaction_uid,
        who,
        len(result.held),
        len(result.failed),
        getattr(status, "Status", 0xFFFF),
    )
