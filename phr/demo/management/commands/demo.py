import io

import qrcode
from django.core.management.base import BaseCommand

from phr.demo.seeding import ensure_demo_patient


class Command(BaseCommand):
    help = "Create (or refresh) the demo patient and print how to log in as them."

    def add_arguments(self, parser):
        parser.add_argument("--no-qr", action="store_true", help="Skip the terminal QR code.")

    def handle(self, *args, no_qr=False, **options):
        demo = ensure_demo_patient()
        out = self.stdout
        out.write(self.style.SUCCESS("Demo patient ready."))
        out.write(f"  Email:     {demo.user.email}")
        out.write(f"  Password:  {demo.password}")
        out.write(f"  TOTP key:  {demo.totp_secret}")
        out.write(f"  TOTP URI:  {demo.otpauth_uri}")
        if not no_qr:
            out.write(
                "  Scan this with an authenticator app (Google Authenticator, Aegis, 1Password…):"
            )
            qr = qrcode.QRCode(border=1)
            qr.add_data(demo.otpauth_uri)
            buffer = io.StringIO()
            qr.print_ascii(out=buffer, invert=True)
            out.write(buffer.getvalue())
        out.write("  Recovery codes (each works once): " + " ".join(demo.recovery_codes))
