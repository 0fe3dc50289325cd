"""`scripts/backup.py` (make backup / make restore): a real embedded site in its own var folder,
backed up, wiped, restored, and compared blob by blob.

Everything runs in subprocesses with a clean environment, so this test exercises the embedded
default even inside the production-like run (PostgreSQL + S3), which backup.py refuses.
"""

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.support.vaultdata import dicomdir_tree

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "backup-patient@example.com"
# Settings that would point the child processes at PostgreSQL, S3 or another folder.
FOREIGN_SETTINGS = ("PHR_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG")


def run(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def embedded(tmp_path):
    """A migrated embedded site with the pydicom CD and a PDF report in one patient's vault."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(FOREIGN_SETTINGS)}
    env["PHR_VAR_DIR"] = str(tmp_path / "var")
    env["PHR_UPLOAD_TEMP_DIR"] = str(tmp_path)  # check_vault looks at this site's temp files only
    assert run(env, "manage.py", "migrate", "--noinput").returncode == 0
    create = f"from accounts.models import User; User.objects.create_user({EMAIL!r}, 'x' * 12)"
    assert run(env, "manage.py", "shell", "-c", create).returncode == 0
    cd = tmp_path / "cd"
    shutil.copytree(dicomdir_tree(), cd)
    Image.new("RGB", (60, 80), "white").save(cd / "report.pdf", "PDF")
    imported = run(env, "manage.py", "import_dicom", str(cd), "--user", EMAIL)
    # The pydicom CD carries one damaged file on purpose, so the import exits 1.
    assert "stored" in imported.stdout, imported.stderr
    return env, tmp_path / "var"


def vault_rows(var: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Row counts per table, and (storage key, sha256) of every instance and document."""
    connection = sqlite3.connect(var / "db.sqlite3")
    try:
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        counts = {
            name: connection.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]  # noqa: S608
            for name in tables
            if name.startswith(("vault_", "accounts_", "sharing_", "django_migrations"))
        }
        blobs = connection.execute(
            "SELECT storage_key, sha256 FROM vault_instance "
            "UNION ALL SELECT storage_key, sha256 FROM vault_document ORDER BY 1"
        ).fetchall()
    finally:
        connection.close()
    return counts, blobs


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_backup_wipe_restore_gives_back_every_row_and_byte(embedded):
    env, var = embedded
    counts, blobs = vault_rows(var)
    assert counts["vault_instance"] > 10 and counts["vault_document"] == 1
    before = {key: sha256_of(var / "media" / key) for key, _sha in blobs}
    assert before == dict(blobs)

    made = run(env, "scripts/backup.py", "backup")
    assert made.returncode == 0, made.stderr
    backup = Path(made.stdout.strip().splitlines()[-1])
    assert backup.parent == var / "backups" and (backup / "manifest.json").is_file()

    for path in var.glob("db.sqlite3*"):
        path.unlink()
    shutil.rmtree(var / "media")

    restored = run(env, "scripts/backup.py", "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert vault_rows(var) == (counts, blobs)
    assert {key: sha256_of(var / "media" / key) for key, _sha in blobs} == before
    checked = run(env, "manage.py", "check_vault")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_incomplete_backup_is_refused_and_nothing_changes(embedded):
    env, var = embedded
    made = run(env, "scripts/backup.py", "backup", "--to", str(var.parent / "elsewhere"))
    backup = Path(made.stdout.strip().splitlines()[-1])
    assert backup.parent == var.parent / "elsewhere"
    next(path for path in (backup / "media").rglob("*.dcm")).unlink()
    database_before = sha256_of(var / "db.sqlite3")

    refused = run(env, "scripts/backup.py", "restore", str(backup))

    assert refused.returncode == 1
    assert "the backup is incomplete" in refused.stderr
    assert sha256_of(var / "db.sqlite3") == database_before
    assert not list(var.glob("*.before-restore-*"))


def test_postgresql_and_s3_are_refused_with_a_pointer_to_the_readme(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(FOREIGN_SETTINGS)}
    env["PHR_VAR_DIR"] = str(tmp_path / "var")
    for setting in ({"DATABASE_URL": "postgresql://phr@127.0.0.1:1/phr"}, {"PHR_STORAGE": "s3"}):
        refused = run({**env, **setting}, "scripts/backup.py", "backup")
        assert refused.returncode == 1
        assert "docs/operations.md, section 'Backups'" in refused.stderr
        assert not (tmp_path / "var" / "backups").exists()
