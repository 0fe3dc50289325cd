"""Receive hospital pushes over DIMSE (C-STORE, C-ECHO) into patients' Inboxes.

manage.py dicom_listener [--host 0.0.0.0] [--port 11112] [--site-url https://vault.example.org]
    [--tls-cert cert.pem --tls-key key.pem [--tls-ca nodes-ca.pem]] [--max-associations 64]

The hospital sends to this host and port with the patient's deposit code as the Called AE title,
from a node registered with `manage.py hospital node`. Stops cleanly on SIGTERM or Ctrl-C:
no new associations, running ones get a grace period to finish.
"""

import logging
import signal
import ssl
import tempfile
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from phr.hospital.dimse import DepositListener, tls_context

# Deliveries whose association died without saying so are finished this often.
SWEEP_SECONDS = 5


class Command(BaseCommand):
    help = "Receive DICOM C-STORE pushes from registered hospital nodes into patients' Inboxes."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.PHR_DICOM_HOST)
        parser.add_argument("--port", type=int, default=settings.PHR_DICOM_PORT)
        parser.add_argument(
            "--site-url",
            default=settings.PHR_SITE_URL,
            help="e.g. https://vault.example.org, for the email's link (default: PHR_SITE_URL)",
        )
        parser.add_argument(
            "--grace", type=float, default=30.0, help="seconds running associations get to finish"
        )
        parser.add_argument(
            "--tls-cert", default=settings.PHR_DICOM_TLS_CERT, help="DICOM TLS: certificate (PEM)"
        )
        parser.add_argument(
            "--tls-key", default=settings.PHR_DICOM_TLS_KEY, help="DICOM TLS: its private key"
        )
        parser.add_argument(
            "--tls-ca",
            default=settings.PHR_DICOM_TLS_CA,
            help="require each node's certificate to be signed by this CA (PEM)",
        )
        parser.add_argument(
            "--max-associations", type=int, default=settings.PHR_DICOM_MAX_ASSOCIATIONS
        )
        parser.add_argument(
            "--per-hospital",
            type=int,
            default=settings.PHR_DICOM_MAX_ASSOCIATIONS_PER_HOSPITAL,
            help="associations one hospital may have at once",
        )

    def handle(self, *args, host, port, site_url, grace, **options):
        if bool(options["tls_cert"]) != bool(options["tls_key"]):
            raise CommandError("DICOM TLS needs both --tls-cert and --tls-key.")
        if options["tls_ca"] and not options["tls_cert"]:
            raise CommandError("--tls-ca needs --tls-cert and --tls-key: TLS is off without them.")
        try:
            ssl_context = (
                tls_context(options["tls_cert"], options["tls_key"], options["tls_ca"])
                if options["tls_cert"]
                else None
            )
        except (OSError, ssl.SSLError) as error:
            raise CommandError(f"DICOM TLS could not start: {error}") from error
        # Our own log lines say what each association did; pynetdicom's say it per PDU.
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        # pynetdicom writes each received image to the default temp folder; this process only
        # listens, so pointing that at the uploads' temp folder (beside a file-system vault, so
        # storing an image is a rename) touches nothing else.
        previous_tempdir, tempfile.tempdir = tempfile.tempdir, str(settings.FILE_UPLOAD_TEMP_DIR)
        stopping = threading.Event()
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
        for signum in previous:
            signal.signal(signum, lambda *_: stopping.set())

        listener = DepositListener(
            site_url=site_url.rstrip("/"),
            max_associations=options["max_associations"],
            per_hospital=options["per_hospital"],
            ssl_context=ssl_context,
        )
        try:
            bound_host, bound_port = listener.start(host, port)
            self.stdout.write(
                f"DICOM listener on {bound_host}:{bound_port}"
                f"{' (DICOM TLS)' if ssl_context else ''}; Called AE: a deposit code"
            )
            if not ssl_context and host not in ("127.0.0.1", "::1", "localhost"):
                self.stderr.write(
                    "Plain DIMSE: images cross the network unencrypted. Use --tls-cert and "
                    "--tls-key unless a VPN or a private link carries them."
                )
            if not site_url:
                self.stderr.write(
                    "PHR_SITE_URL is not set: the email telling a patient that images have "
                    "arrived will carry a link without the site's address."
                )
            self.stdout.flush()
            while not stopping.wait(SWEEP_SECONDS):
                listener.sweep()
            self.stdout.write("Stopping: no new associations; running ones may finish…")
            self.stdout.flush()
        finally:
            listener.stop(grace=grace)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            tempfile.tempdir = previous_tempdir  # for a caller that goes on (the tests)
        self.stdout.write("DICOM listener stopped.")
