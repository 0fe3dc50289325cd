"""python manage.py import_dicom PATH --user EMAIL [--source import]

For a CD that reached an administrator rather than the patient's browser: a folder, a ZIP of
one, or a single file goes through the same ingest service as an upload, then the same
summary by study is printed. Exits non-zero when any file was rejected or failed, so a script
can tell.
"""

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from phr.vault import importer
from phr.vault.models import Source


class Command(BaseCommand):
    help = "Import a folder, or a ZIP, of DICOM files (a hospital CD) into a patient's vault."

    def add_arguments(self, parser):
        parser.add_argument("path", help="A folder, a ZIP file, or one DICOM file.")
        parser.add_argument("--user", required=True, metavar="EMAIL", help="The vault's owner.")
        parser.add_argument(
            "--source",
            choices=Source.values,
            default=Source.IMPORT,
            help="Where the studies are recorded as coming from (default: import).",
        )

    def handle(self, *args, path, user, source, **options):
        owner = get_user_model().objects.filter(email__iexact=user.strip()).first()
        if owner is None:
            raise CommandError(
                f"No account uses the email address {user!r}. Check the spelling, or have "
                "the patient sign up first."
            )
        if not os.path.exists(path):
            raise CommandError(f"Nothing found at {path!r}. Give a folder, a ZIP or a file.")

        summary = importer.ImportSummary()
        progress = ProgressBar(self.stderr, importer.count_files(path))
        for result in importer.iter_path(owner, path, source=source):
            summary.add(result)
            progress.advance()
        progress.finish()

        self.stdout.write(summary.render())
        if summary.failed:
            count = len(summary.problems)
            raise CommandError(
                f"{count} file{'s' if count != 1 else ''} could not be imported (listed above)."
            )


class ProgressBar:
    """`[######......] 123/412 files` redrawn in place on stderr; plain text, no dependency."""

    WIDTH = 30

    def __init__(self, out, total: int | None):
        self.out, self.total, self.done = out, total, 0

    def advance(self) -> None:
        self.done += 1
        self._draw()

    def finish(self) -> None:
        self._draw()
        self.out.write("", ending="\n")

    def _draw(self) -> None:
        if self.total:
            filled = min(self.WIDTH, self.WIDTH * self.done // self.total)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            text = f"\r[{bar}] {self.done}/{self.total} files"
        else:
            text = f"\r{self.done} files"
        # No colour: the stderr wrapper would paint every redraw red.
        self.out.write(text, style_func=str, ending="")
        self.out.flush()
