#!/usr/bin/env python
"""Run the test suite the way production runs: PostgreSQL plus a real S3 server.

Creates a fresh PostgreSQL database (dropped afterwards), starts SeaweedFS on loopback with
free ports and a temp data folder (stopped by PID afterwards), points the settings at both
through the environment, and runs pytest with any arguments given.
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.seaweed import SeaweedS3  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "PHR_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def admin_execute(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(sql)


def main(pytest_args: list[str]) -> int:
    db_name = f"phr_ci_{secrets.token_hex(4)}"
    admin_execute(f'CREATE DATABASE "{db_name}"')
    s3 = SeaweedS3(bucket=f"phr-ci-{secrets.token_hex(4)}")
    try:
        print(f"test-prod: PostgreSQL database {db_name}; starting SeaweedFS…", flush=True)
        s3.start()
        print(f"test-prod: SeaweedFS S3 at {s3.endpoint} (pid {s3.process.pid})", flush=True)
        env = {
            **os.environ,
            **s3.env(),
            "DATABASE_URL": PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{db_name}",
            "PHR_VAR_DIR": str(s3.workdir / "var"),
        }
        command = [sys.executable, "-m", "pytest", *pytest_args]
        return subprocess.call(command, cwd=ROOT, env=env)
    finally:
        s3.cleanup()
        admin_execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        admin_execute(f'DROP DATABASE IF EXISTS "test_{db_name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
