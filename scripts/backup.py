#!/usr/bin/env python
"""Back up and restore the embedded default: the SQLite database and the media folder.

    python scripts/backup.py backup [--to DIR]   # into DIR/<UTC timestamp>/, DIR = var/backups
    python scripts/backup.py restore FROM        # FROM = one backup's folder; stop the site first

A backup is `db.sqlite3` (taken with SQLite's online backup API, so it is consistent while the
site runs), `media/` (a copy of MEDIA_ROOT) and `manifest.json` (created time, row counts, file
counts, SHA-256 of the database copy). It is assembled in a hidden `.partial` folder and renamed
only once complete, so a folder with a manifest is a whole backup.

Restore checks the backup against its manifest first, copies everything beside the live data,
then swaps it in by renaming; whatever was there is kept as `*.before-restore-<timestamp>`.

PostgreSQL and S3 are refused: production backs up with pg_dump and bucket versioning
(docs/operations.md).
"""

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FORMAT = 1
MANIFEST = "manifest.json"
DB_FILE = "db.sqlite3"
MEDIA_DIR = "media"
HASH_CHUNK = 1024 * 1024


class Refused(Exception):
    """Nothing was changed; the message says why and what to do instead."""


# --- backup --------------------------------------------------------------------------------------


def backup(db_path: Path, media_root: Path, parent: Path) -> Path:
    if not db_path.is_file():
        raise Refused(f"There is no database at {db_path}: nothing to back up.")
    stamp = _stamp()
    final, partial = parent / stamp, parent / f".{stamp}.partial"
    if final.exists():
        raise Refused(f"{final} already exists; try again in a second.")
    partial.mkdir(parents=True)
    try:
        tables = _copy_database(db_path, partial / DB_FILE)
        if media_root.is_dir():
            shutil.copytree(media_root, partial / MEDIA_DIR)
        (partial / MEDIA_DIR).mkdir(exist_ok=True)  # a vault with no upload yet
        files, size = _tree_size(partial / MEDIA_DIR)
        missing = _unreferenced_keys(partial / DB_FILE, partial / MEDIA_DIR)
        manifest = {
            "format": FORMAT,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "database": {"file": DB_FILE, "sha256": _sha256(partial / DB_FILE), "tables": tables},
            "media": {"folder": MEDIA_DIR, "files": files, "bytes": size},
            # Rows whose blob was not there to copy (a study deleted mid-backup, or a vault that
            # was already damaged): check_vault lists them after a restore.
            "missing_blobs": missing,
            "source": {"database": str(db_path), "media": str(media_root)},
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        os.sync()  # the backup is on disk before it is called complete
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if missing:
        print(f"warning: {len(missing)} row(s) had no blob to copy, e.g. {missing[0]}")
    return final


def _copy_database(source_path: Path, target_path: Path) -> dict[str, int]:
    """Copy with the online backup API (a consistent snapshot, even mid-write) and verify."""
    source = sqlite3.connect(source_path, timeout=30)
    target = sqlite3.connect(target_path)
    try:
        source.backup(target)
        if target.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise Refused("The database copy failed SQLite's integrity check; nothing was kept.")
        # The copy is a single self-contained file: no -wal beside it to lose.
        target.execute("PRAGMA journal_mode=DELETE")
        return _table_counts(target)
    finally:
        target.close()
        source.close()


def _table_counts(connection) -> dict[str, int]:
    names = connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    ).fetchall()
    return {
        name: connection.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]  # noqa: S608
        for (name,) in names
    }


def _unreferenced_keys(db_file: Path, media: Path) -> list[str]:
    """Storage keys that rows of the copy point at but the media copy lacks."""
    from phr.vault.models import Document, Instance

    connection = sqlite3.connect(db_file)
    try:
        keys = [
            key
            for model in (Instance, Document)
            for (key,) in connection.execute(
                f'SELECT storage_key FROM "{model._meta.db_table}"'  # noqa: S608
            )
        ]
    finally:
        connection.close()
    return [key for key in keys if not (media / key).is_file()]


# --- restore -------------------------------------------------------------------------------------


def restore(source: Path, db_path: Path, media_root: Path) -> list[Path]:
    """Put a verified backup in place; return where the previous data was kept."""
    manifest = verified_manifest(source)
    db_incoming = db_path.with_name(db_path.name + ".restoring")
    media_incoming = media_root.with_name(media_root.name + ".restoring")
    # Everything is written beside the live data first (same folder, same file system), so
    # the swap below is a few renames and a failure up to here leaves the live data untouched.
    db_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / DB_FILE, db_incoming)
    if _sha256(db_incoming) != manifest["database"]["sha256"]:
        db_incoming.unlink()
        raise Refused("The database copy came out different from the backup; nothing changed.")
    shutil.rmtree(media_incoming, ignore_errors=True)  # left by an interrupted restore
    shutil.copytree(source / MEDIA_DIR, media_incoming)
    os.sync()

    stamp, kept = _stamp(), []
    # The -wal and -shm files belong to the old database: left behind, SQLite would replay
    # them into the restored one. They move aside with it and still open as one database.
    for suffix in ("", "-wal", "-shm"):
        live = Path(f"{db_path}{suffix}")
        if live.exists():
            kept.append(live.rename(Path(f"{db_path}.before-restore-{stamp}{suffix}")))
    db_incoming.rename(db_path)
    if media_root.exists():
        kept.append(
            media_root.rename(media_root.with_name(f"{media_root.name}.before-restore-{stamp}"))
        )
    media_incoming.rename(media_root)
    return kept


def verified_manifest(source: Path) -> dict:
    """The backup's manifest, once everything it lists is there and intact."""
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except FileNotFoundError:
        raise Refused(f"{source} has no {MANIFEST}: it is not a complete backup.") from None
    except ValueError:
        raise Refused(f"{source / MANIFEST} is damaged: this backup can't be trusted.") from None
    if manifest.get("format") != FORMAT:
        raise Refused(f"{source} was made by another version of this script.")
    if not (source / DB_FILE).is_file():
        raise Refused(f"{source} has no {DB_FILE}: the backup is incomplete.")
    if _sha256(source / DB_FILE) != manifest["database"]["sha256"]:
        raise Refused(f"{source / DB_FILE} differs from its manifest: the backup is damaged.")
    files, size = _tree_size(source / MEDIA_DIR)
    media = manifest["media"]
    if (files, size) != (media["files"], media["bytes"]):
        raise Refused(
            f"{source / MEDIA_DIR} holds {files} files ({size} bytes) but the manifest lists "
            f"{media['files']} ({media['bytes']} bytes): the backup is incomplete."
        )
    return manifest


# --- helpers -------------------------------------------------------------------------------------


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fileobj:
        while chunk := fileobj.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _tree_size(folder: Path) -> tuple[int, int]:
    if not folder.is_dir():
        return 0, 0
    sizes = [path.stat().st_size for path in folder.rglob("*") if path.is_file()]
    return len(sizes), sum(sizes)


def embedded_paths(settings) -> tuple[Path, Path]:
    """(database file, media folder), or Refused for PostgreSQL or S3."""
    engine = settings.DATABASES["default"]["ENGINE"]
    storage = settings.STORAGES["default"]["BACKEND"]
    if engine != "django.db.backends.sqlite3" or not storage.endswith("FileSystemStorage"):
        raise Refused(
            "This site runs on PostgreSQL and/or S3, which this script does not back up. "
            "Follow the production procedure in docs/operations.md, section 'Backups' "
            "(pg_dump/pg_restore and bucket versioning)."
        )
    return Path(settings.DATABASES["default"]["NAME"]), Path(settings.MEDIA_ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("backup", help="Back up the database and the media folder.")
    make.add_argument("--to", metavar="DIR", help="Parent folder (default: var/backups).")
    put = commands.add_parser("restore", help="Put a backup back in place (stop the site first).")
    put.add_argument("source", metavar="FROM", help="The backup's folder.")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phr.settings")
    import django
    from django.conf import settings

    django.setup()
    try:
        db_path, media_root = embedded_paths(settings)
        if args.command == "backup":
            folder = backup(db_path, media_root, Path(args.to or settings.VAR_DIR / "backups"))
            print(f"Backed up {db_path} and {media_root} into:\n{folder}")
        else:
            kept = restore(Path(args.source), db_path, media_root)
            print(f"Restored {db_path} and {media_root} from {args.source}.")
            for path in kept:
                print(f"The previous data was kept as {path} (delete it once you are sure).")
            print("Start the site again, then run: python manage.py check_vault")
    except Refused as error:
        print(f"backup.py {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
