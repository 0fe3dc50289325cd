"""The demo patient that `make run` creates, so a newcomer can log in at once."""

from dataclasses import dataclass

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.db import transaction

from accounts.adapter import MFAAdapter
from accounts.crypto import decrypt_text
from accounts.models import User

DEMO_EMAIL = "demo@example.com"
# A demo account on a developer's machine; it holds only pydicom's public test images.
DEMO_PASSWORD = "demo-vault-2026"  # noqa: S105


@dataclass
class DemoPatient:
    user: User
    password: str
    totp_secret: str
    otpauth_uri: str
    recovery_codes: list[str]


@transaction.atomic
def ensure_demo_patient() -> DemoPatient:
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
