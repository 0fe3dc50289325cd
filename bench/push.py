#!/usr/bin/env python
"""Hospital push benchmark: the 300-slice 512x512 16-bit CT (~158 MB) sent into a patient's
Inbox by STOW-RS (batches of 50 instances per request, through gunicorn) and by dcmtk's storescu
(one association) to `manage.py dicom_listener`, on the embedded default and on PostgreSQL +
SeaweedFS. Prints instances/s and MB/s for each.

Reference (issue #6), on this machine: STOW-RS target >= 190 instances/s, Orthanc 1.10 does
121-134/s. C-STORE target >= 130 instances/s out of the box; Orthanc does 18/s with its
defaults (Nagle's algorithm on its sockets) and 129/s with TCP_NODELAY.

    .venv/bin/python bench/push.py [--backend embedded|prod|both] [--method stow|cstore|both]
        [--stow-clients 1] [--profile]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PYTHON,
    ROOT,
    NoDelayConnection,
    backend,
    free_port,
    gunicorn,
    manage,
    profiled,
    synthesize_ct,
    workspace,
)

STOW_TARGET, STOW_ORTHANC = 190, "121-134/s"
CSTORE_TARGET, CSTORE_ORTHANC = 130, "18/s with its defaults, 129/s with TCP_NODELAY"
BATCH = 50
# dcmtk's, by full path: pynetdicom installs tools of the same names in the venv's bin folder.
STORESCU, ECHOSCU = "/usr/bin/storescu", "/usr/bin/echoscu"
NODE_AE = "BENCH_PACS"
BOUNDARY = "bench-boundary-5c1e"

# One organisation with a token and a loopback node; one patient (and deposit code) per method,
# so the second method's images are new rather than "already in your vault".
SETUP = f"""
import json
from datetime import timedelta
from django.utils import timezone
from accounts.models import User
from phr.hospital import services
from phr.hospital.models import ApiToken, DicomNode, Organisation
org = Organisation.objects.create(name="Bench Hospital")
DicomNode.objects.create(organisation=org, ae_title="{NODE_AE}", network="127.0.0.1")
_token, plaintext = ApiToken.issue(org)
codes = {{}}
for method in ("stow", "dimse"):
    user = User.objects.create_user(f"{{method}}@bench.invalid", None)
    expires = timezone.now() + timedelta(days=1)
    _row, plain = services.create_deposit_code(user, label=method, expires_at=expires)
    codes[method] = plain.code
print(json.dumps({{"token": plaintext, **codes}}))
"""


def report(kind: str, method: str, files: list[Path], elapsed: float, target, orthanc) -> None:
    total_mb = sum(path.stat().st_size for path in files) / 1e6
    rate = len(files) / elapsed
    print(
        f"[{kind}] {method}: {len(files)} instances, {total_mb:.0f} MB in {elapsed:.2f} s -> "
        f"{rate:.0f} instances/s, {total_mb / elapsed:.0f} MB/s "
        f"(target >= {target}/s; Orthanc 1.10: {orthanc})",
        flush=True,
    )


def multipart(paths: list[Path]) -> bytes:
    chunks = []
    for path in paths:
        chunks += [f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()]
        chunks += [path.read_bytes(), b"\r\n"]
    return b"".join([*chunks, f"--{BOUNDARY}--\r\n".encode()])


def stow(port: int, code: str, token: str, files: list[Path], clients: int) -> float:
    batches = [files[i : i + BATCH] for i in range(0, len(files), BATCH)]
    bodies = [multipart(batch) for batch in batches]  # built before the clock starts
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
    }

    def send(body: bytes) -> int:
        conn = NoDelayConnection("127.0.0.1", port, timeout=300)
        conn.request("POST", f"/dicomweb/deposit/{code}/studies", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(send, bodies))
    elapsed = time.perf_counter() - started
    assert statuses == [200] * len(bodies), f"STOW-RS answered {statuses}"
    return elapsed


def dicom_listener(env: dict, code: str) -> tuple[int, subprocess.Popen]:
    port = free_port()
    command = [PYTHON, "manage.py", "dicom_listener", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    # Ready when it answers a C-ECHO (a bare TCP probe would sit as a half-open association).
    echo = [ECHOSCU, "-aet", NODE_AE, "-aec", code, "127.0.0.1", str(port)]
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            if subprocess.run(echo, capture_output=True).returncode == 0:
                return port, process
            time.sleep(0.2)
        raise RuntimeError("dicom_listener did not start")
    except BaseException:
        process.kill()
        raise


def cstore(env: dict, code: str, folder: Path, profile: bool) -> float:
    port, process = dicom_listener(env, code)
    try:
        command = [STORESCU, "+sd", "-aet", NODE_AE, "-aec", code, "127.0.0.1", str(port)]
        with profiled(process.pid, "C-STORE listener") if profile else nullcontext():
            started = time.perf_counter()
            subprocess.run([*command, str(folder)], check=True)
            elapsed = time.perf_counter() - started
        return elapsed
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def run(kind: str, folder: Path, files: list[Path], args) -> None:
    with backend(kind) as env:
        # The patient's emails go nowhere: this measures the push, not a mail server.
        env = {**env, "PHR_EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend"}
        with gunicorn(env) as (port, server):
            ids = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
            if args.method in ("stow", "both"):
                with profiled(server.pid, "STOW-RS server") if args.profile else nullcontext():
                    elapsed = stow(port, ids["stow"], ids["token"], files, args.stow_clients)
                method = f"STOW-RS, batches of {BATCH}, {args.stow_clients} client(s)"
                report(kind, method, files, elapsed, STOW_TARGET, STOW_ORTHANC)
        if args.method not in ("cstore", "both"):
            return
        elapsed = cstore(env, ids["dimse"], folder, args.profile)
        report(
            kind, "C-STORE, storescu, 1 association", files, elapsed, CSTORE_TARGET, CSTORE_ORTHANC
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["embedded", "prod", "both"], default="both")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--method", choices=["stow", "cstore", "both"], default="both")
    parser.add_argument(
        "--stow-clients", type=int, default=1, help="STOW-RS requests (batches) sent at once"
    )
    parser.add_argument(
        "--profile", action="store_true", help="sample the servers with py-spy (slows them down)"
    )
    args = parser.parse_args()
    if not Path(STORESCU).exists():
        sys.exit("push.py needs dcmtk's storescu and echoscu: run `make dcmtk` first.")

    folder = Path(tempfile.mkdtemp(prefix="phr-bench-ct-", dir=workspace()))
    started = time.perf_counter()
    files = synthesize_ct(folder, slices=args.slices)
    print(f"synthesised {len(files)} slices in {time.perf_counter() - started:.1f} s")
    try:
        for kind in ["embedded", "prod"] if args.backend == "both" else [args.backend]:
            run(kind, folder, files, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
