"""python manage.py check_vault [--fix] [--grace-seconds N] [--owner EMAIL_OR_ID]

Reports blobs without rows (orphans), thumbnails of images that are gone, incomplete S3
multipart uploads, rows without blobs, checksum mismatches and stale upload temp files (see
phr.vault.checker). `--fix` removes the leftovers (orphans, unreferenced thumbnails, stale
temp files) and aborts the incomplete uploads older than the grace period, nothing else.

Exit status: 0 when nothing needs attention; 1 when any problem remains after the run
(leftovers past the grace period that were not removed, missing blobs, checksum mismatches,
unreadable blobs). Leftovers still within the grace period are reported as pending and do not
fail the run: they are most likely an ingest that has not committed its rows yet.
"""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from phr.vault import checker


class Command(BaseCommand):
    help = "Check that the vault's stored files and database rows agree."

    def add_arguments(self, parser):
        parser.add_argument(
            "--fix",
            action="store_true",
            help="Remove orphan blobs, unreferenced thumbnails and stale temp files, and abort "
            "incomplete multipart uploads, older than the grace period. Missing blobs and "
            "checksum mismatches are only ever reported.",
        )
        parser.add_argument(
            "--grace-seconds",
            type=int,
            default=checker.DEFAULT_GRACE_SECONDS,
            metavar="N",
            help="Leave leftovers younger than this alone (default: 24 hours).",
        )
        parser.add_argument(
            "--owner", metavar="EMAIL_OR_ID", help="Check only this owner's blobs and rows."
        )
        parser.add_argument(
            "--examples", type=int, default=10, metavar="N", help="Keys listed per finding."
        )

    def handle(self, *args, fix, grace_seconds, owner, examples, **options):
        if grace_seconds < 0:
            raise CommandError("--grace-seconds can't be negative.")
        report = checker.check_vault(
            fix=fix, grace_seconds=grace_seconds, owner_id=_owner_id(owner)
        )
        self.stdout.write(checker.render(report, examples))
        if not report.ok:
            raise CommandError(f"{report.problem_count} problem(s) in the vault (listed above).")


def _owner_id(value: str | None):
    """An email address, or the owner's id as in `vault/<id>/` (which outlives the account)."""
    if value is None:
        return None
    if "@" in value:
        user = get_user_model().objects.filter(email__iexact=value.strip()).first()
        if user is None:
            raise CommandError(f"No account uses the email address {value!r}.")
        return user.pk
    try:
        return get_user_model()._meta.pk.to_python(value.strip())
    except ValidationError:
        raise CommandError(f"{value!r} is neither an email address nor an owner id.") from None
