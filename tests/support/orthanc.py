"""Orthanc from Debian (`orthanc`, `orthanc-dicomweb`) as a real DICOMweb peer, for tests.

Orthanc 1.10 listens on every interface, so it runs inside a network namespace of its own,
joined to this one by a veth pair with a private /30: it reaches our test server at the host
end, we reach its REST API at its end, and nothing else reaches either. That takes root (CI
runs as root); elsewhere `unavailable()` says why, for a clear skip.
"""

import contextlib
import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import requests

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
HTTP_PORT = 8042


def unavailable() -> str | None:
    """Why Orthanc can't run here, or None."""
    if not (Path(ORTHANC).exists() and Path(DICOMWEB_PLUGIN).exists()):
        return "Orthanc is missing: `make test` installs Debian's orthanc and orthanc-dicomweb"
    if os.geteuid() != 0 or not shutil.which("ip"):
        return "a network namespace for Orthanc needs root and iproute2 (CI has both)"
    return None


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)


@contextlib.contextmanager
def private_link():
    """A namespace joined by a veth pair: yields (namespace, host address, Orthanc's address)."""
    tag = f"{os.getpid() % 10000}{random.randrange(100)}"
    namespace, host_end, far_end = f"phr-o{tag}", f"phro{tag}h", f"phro{tag}o"
    octet = random.randrange(1, 250)
    host_ip, far_ip = f"10.231.{octet}.1", f"10.231.{octet}.2"
    _run("ip", "netns", "add", namespace)
    try:
        _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", far_end)
        _run("ip", "link", "set", far_end, "netns", namespace)
        _run("ip", "addr", "add", f"{host_ip}/30", "dev", host_end)
        _run("ip", "link", "set", host_end, "up")
        inside = ("ip", "netns", "exec", namespace)
        _run(*inside, "ip", "addr", "add", f"{far_ip}/30", "dev", far_end)
        _run(*inside, "ip", "link", "set", far_end, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        yield namespace, host_ip, far_ip
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


@contextlib.contextmanager
def orthanc(folder: Path, namespace: str, address: str, dicomweb_servers: dict):
    """Orthanc with its DICOMweb plugin in `namespace`; yields its REST API's base URL."""
    storage = folder / "orthanc-db"
    storage.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "phr-test-peer",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": HTTP_PORT,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": True,
        "AuthenticationEnabled": False,
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Servers": dicomweb_servers},
    }
    config_path = folder / "orthanc.json"
    config_path.write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("w")
    process = subprocess.Popen(
        ["ip", "netns", "exec", namespace, ORTHANC, str(config_path)], stdout=log, stderr=log
    )
    url = f"http://{address}:{HTTP_PORT}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/system", timeout=2).ok:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc did not start: {(folder / 'orthanc.log').read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
