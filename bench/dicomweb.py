#!/usr/bin/env python
"""DICOMweb read, side by side with Orthanc's own DICOMweb plugin serving the same study.

    make orthanc    # Orthanc and its DICOMweb plugin, from Debian (the bench needs root: below)
    .venv/bin/python bench/dicomweb.py [--slices 300] [--rounds 5]

The synthetic CT goes into a patient's vault on the embedded default under gunicorn (4 sync
workers), shared with downloads allowed, and read with the share's DICOMweb token; the same
files go into Orthanc 1.10 (Debian's, with its default settings and SQLite index). Orthanc
listens on every interface, so it runs in a network namespace of its own reached over a veth
pair (tests/support/orthanc.py); gunicorn listens on the host end of that pair, so both answers
cross the same kind of link. Rounds alternate which server goes first; each figure is the
median of the rounds, and the ratio is Orthanc's time over ours (above 1: we are faster).

Measured per round, one request at a time:
  - QIDO-RS: the study search, and the series' instances (300 rows);
  - WADO-RS series metadata (Orthanc reads it from its files unless told otherwise; we keep
    each file's header once read: the first request is shown apart as "cold");
  - WADO-RS retrieval of the whole series (multipart, every byte read by the client).
Issue #17's targets: series metadata >= 10x, whole-series retrieval >= 1.0x. Prints figures;
asserts nothing.
"""

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests

from bench.common import backend, gunicorn, manage, synthesize_ct, workspace
from tests.support import orthanc as orthanc_support

SETUP = """
import json
from datetime import timedelta
from django.utils import timezone
from accounts.models import User
from phr.sharing import services
from phr.sharing.models import DicomwebToken
from phr.vault.models import Study
user = User.objects.get(email="bench-dicomweb@bench.invalid")
study = Study.objects.get(owner=user)
share, _secrets = services.create_share(
    user, [study], label="bench", expires_at=timezone.now() + timedelta(days=1),
    allow_download=True,
)
_row, token = DicomwebToken.issue(user, share=share, visitor="bench")
series = study.series.get()
print(json.dumps({"token": token, "study": study.study_instance_uid,
                  "series": series.series_instance_uid}))
"""


def timed_get(host: str, port: int, path: str, headers: dict) -> tuple[float, int, int]:
    """(seconds, status, bytes) of one GET on a fresh connection, the whole body read."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=600)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    size = 0
    while chunk := response.read(1 << 20):
        size += len(chunk)
    conn.close()
    return time.perf_counter() - started, response.status, size


def requests_for(root: str, ids: dict) -> dict[str, tuple[str, dict]]:
    study, series = ids["study"], ids["series"]
    series_path = f"{root}/studies/{study}/series/{series}"
    json_accept = {"Accept": "application/dicom+json"}
    return {
        "QIDO studies": (f"{root}/studies?PatientID=BENCH1", json_accept),
        "QIDO series' instances": (f"{series_path}/instances", json_accept),
        "series metadata": (f"{series_path}/metadata", json_accept),
        "series retrieval": (
            series_path,
            {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    reason = orthanc_support.unavailable()
    if reason:
        sys.exit(f"Orthanc can't run here: {reason}.")

    folder = Path(tempfile.mkdtemp(prefix="phr-dicomweb-ct-", dir=workspace()))
    files = synthesize_ct(folder, slices=args.slices)
    total_mb = sum(path.stat().st_size for path in files) / 1e6
    print(f"{len(files)} slices, {total_mb:.0f} MB", flush=True)

    with (
        orthanc_support.private_link() as (namespace, host_ip, orthanc_ip),
        backend("embedded") as env,
    ):
        env = {**env, "ALLOWED_HOSTS": f"127.0.0.1,localhost,{host_ip}"}
        manage(env, "migrate", "--noinput")
        manage(env, "shell", "-c", _create_user())
        manage(env, "import_dicom", str(folder), "--user", "bench-dicomweb@bench.invalid")
        ids = json.loads(manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
        with (
            gunicorn(env, bind_host=host_ip) as (port, _process),
            orthanc_support.orthanc(
                Path(tempfile.mkdtemp(dir=workspace())), namespace, orthanc_ip, {}
            ) as orthanc_url,
        ):
            for path in files:
                requests.post(f"{orthanc_url}/instances", data=path.read_bytes(), timeout=60)
            ours = (host_ip, port, "/dicomweb", {"Authorization": f"Bearer {ids['token']}"})
            theirs = (orthanc_ip, orthanc_support.HTTP_PORT, "/dicom-web", {})
            run_rounds(ours, theirs, ids, args.rounds, total_mb)


def _create_user() -> str:
    return (
        "from accounts.models import User; "
        "User.objects.create_user('bench-dicomweb@bench.invalid', None)"
    )


def run_rounds(ours, theirs, ids: dict, rounds: int, total_mb: float) -> None:
    servers = {"vault": ours, "Orthanc": theirs}
    times: dict = {(name, what): [] for name in servers for what in requests_for("", ids)}
    cold = {}
    for round_number in range(rounds + 1):  # round 0 warms up both (and fills our metadata)
        order = list(servers) if round_number % 2 else list(reversed(servers))
        for name in order:
            host, port, root, auth = servers[name]
            for what, (path, headers) in requests_for(root, ids).items():
                seconds, status, _size = timed_get(host, port, path, {**auth, **headers})
                if status != 200:
                    raise SystemExit(f"{name} answered {status} to {what} ({path})")
                if round_number == 0:
                    cold[(name, what)] = seconds
                else:
                    times[(name, what)].append(seconds)
    print(f"\n{'request':<26}{'vault':>10}{'Orthanc':>10}{'ratio':>9}   (median ms of {rounds})")
    for what in requests_for("", ids):
        ours_ms = statistics.median(times[("vault", what)]) * 1000
        theirs_ms = statistics.median(times[("Orthanc", what)]) * 1000
        print(f"{what:<26}{ours_ms:>10.1f}{theirs_ms:>10.1f}{theirs_ms / ours_ms:>8.2f}x")
    retrieval = statistics.median(times[("vault", "series retrieval")])
    print(f"\nseries retrieval: {total_mb / retrieval:.0f} MB/s from the vault")
    print(
        "first (cold) series metadata: vault "
        f"{cold[('vault', 'series metadata')] * 1000:.0f} ms (reads each file once), Orthanc "
        f"{cold[('Orthanc', 'series metadata')] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
