"""The demo patient that `make run` creates, so a newcomer can log in at once, and finds a
vault already filled with pydicom's public test images (a real CD tree, plus files in the
compressed encodings the viewer must handle), and one study a "hospital" sent to the Inbox."""

import shutil
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.db import transaction
from django.utils import timezone
from pydicom.data import get_testdata_file

from accounts.adapter import MFAAdapter
from accounts.models import User
from phr.lib.crypto import decrypt_text
from phr.vault import importer
from phr.vault.models import Source

DEMO_EMAIL = "demo@example.com"
# A demo account on a developer's machine; it holds only pydicom's public test images.
DEMO_PASSWORD = "demo-vault-2026"  # noqa: S105

# One file per encoding the viewer has to decode, from pydicom's bundled test data. Names that a
# pydicom release doesn't bundle (emri_small.dcm is download-only in 3.0) are left out quietly.
DEMO_FILES = [
    "JPEG2000.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_rle.dcm",
    "MR_small_RLE.dcm",
    "JPEGLSNearLossless_16.dcm",
    "CT_small.dcm",
    "MR_small.dcm",
    "emri_small.dcm",
    "image_dfl.dcm",
    "MR_small_bigendian.dcm",
    "JPGExtended.dcm",
]


@dataclass
class DemoPatient:
    user: User
    password: str
    totp_secret: str
    otpauth_uri: str
    recovery_codes: list[str]


def ensure_demo_patient() -> DemoPatient:
    demo = _ensure_demo_account()
    # Outside the account's transaction: each file is stored and indexed atomically on its own,
    # and a rollback of the account could not take back blobs already written to storage.
    fill_demo_vault(demo.user)
    fill_demo_inbox(demo.user)
    return demo


def fill_demo_vault(user: User) -> importer.ImportSummary:
    """Idempotent: a second run finds every file "already in your vault" and adds nothing."""
    summary = importer.ImportSummary()
    for result in importer.iter_folder(user, demo_cd_tree(), source=Source.IMPORT):
        summary.add(result)
    for result in importer.iter_files(user, demo_files(), source=Source.IMPORT):
        summary.add(result)
    return summary


DEMO_HOSPITAL = "Demo Imaging Centre"
DEMO_DELIVERY = "examples_overlay.dcm"


def fill_demo_inbox(user: User) -> None:
    """A study "sent by a hospital", waiting in the Inbox, so Accept and Reject can be tried.
    Idempotent like the vault: once delivered (or accepted), a rerun stores nothing."""
    from phr.hospital import services
    from phr.hospital.models import DepositCode, Organisation

    organisation, _ = Organisation.objects.get_or_create(name=DEMO_HOSPITAL)
    deposit = DepositCode.objects.filter(owner=user, label=DEMO_HOSPITAL).first()
    if deposit is None:
        deposit, _plain = services.create_deposit_code(
            user,
            label=DEMO_HOSPITAL,
            organisation=organisation,
            expires_at=timezone.now() + timedelta(days=365),
        )
    path = get_testdata_file(DEMO_DELIVERY, download=False)
    if not path:
        return
    report = services.DeliveryReport(deposit=deposit, organisation=organisation)
    with tempfile.TemporaryFile() as spool, open(path, "rb") as original:
        shutil.copyfileobj(original, spool)
        spool.seek(0)
        services.receive_file(report, spool, DEMO_DELIVERY)


def demo_cd_tree() -> Path:
    """pydicom's real CD: a DICOMDIR and the image files it references."""
    return Path(get_testdata_file("DICOMDIR", download=False)).parent


def demo_files() -> list[Path]:
    found = (get_testdata_file(name, download=False) for name in DEMO_FILES)
    return [Path(path) for path in found if path]


@transaction.atomic
def _ensure_demo_account() -> DemoPatient:
    user, _ = User.objects.get_or_create(email=DEMO_EMAIL, defaults={"full_name": "Alex Demo"})
    user.set_password(DEMO_PASSWORD)
    user.save()
    EmailAddress.objects.update_or_create(
        user=user, email=DEMO_EMAIL, defaults={"verified": True, "primary": True}
    )

    totp = Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).first()
    if totp is None:
        secret = generate_totp_secret()
        TOTP.activate(user, secret)
    else:
        secret = decrypt_text(totp.data["secret"])

    codes = Authenticator.objects.filter(user=user, type=Authenticator.Type.RECOVERY_CODES).first()
    recovery = RecoveryCodes(codes) if codes else RecoveryCodes.activate(user)

    return DemoPatient(
        user=user,
        password=DEMO_PASSWORD,
        totp_secret=secret,
        otpauth_uri=MFAAdapter().build_totp_url(user, secret),
        recovery_codes=recovery.get_unused_codes(),
    )
