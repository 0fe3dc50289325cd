"""Start and stop a real nginx on loopback, running the site file we ship (deploy/nginx/phr.conf).

Used by the secure-link tests and by bench/serve.py. nginx runs in the foreground
(`daemon off`) as a child of this process, with its configuration, pid file, error log and
temp folders in a folder of the caller's; it is stopped by PID.
"""

import getpass
import http.client
import os
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SITE_FILE = ROOT / "deploy" / "nginx" / "phr.conf"
NGINX = "/usr/sbin/nginx"
MIME_TYPES = "/etc/nginx/mime.types"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def available() -> bool:
    return os.access(NGINX, os.X_OK)


def site_server(
    port: int,
    media_root: Path,
    static_root: Path,
    upstream: str,
    secret: str,
    access_log: Path | None = None,
) -> str:
    """deploy/nginx/phr.conf with its placeholders filled in, listening on plain HTTP on
    loopback (the tests have no certificate); its access log in `access_log`, or nowhere."""
    text = SITE_FILE.read_text()
    replacements = {
        "/var/log/nginx/phr.access.log": str(access_log or "/dev/null"),
        "listen 443 ssl;": f"listen 127.0.0.1:{port};",
        "/srv/phr/var/media/": f"{media_root}/",
        "/srv/phr/staticfiles/": f"{static_root}/",
        "127.0.0.1:8000": upstream,
        "CHANGE-ME-to-PHR_SECURE_LINK_SECRET": secret,
    }
    for placeholder, value in replacements.items():
        # The comments name the placeholders too; a placeholder only there means the site file
        # changed and this helper no longer tests what we ship.
        if placeholder not in "\n".join(_directives(text)):
            raise AssertionError(f"{SITE_FILE} no longer has {placeholder!r}")
        text = text.replace(placeholder, value)
    return "\n".join(_directives(text, drop_prefix="ssl_"))


def _directives(text: str, drop_prefix: str | None = None) -> list[str]:
    """The lines of a config that are not comments (and not `drop_prefix…` directives)."""
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (drop_prefix and stripped.startswith(drop_prefix)):
            continue
        kept.append(line)
    return kept


class Nginx:
    """nginx serving `servers` (server { } blocks) from `workdir`; the first block's port is
    the one waited for."""

    def __init__(self, workdir: Path, servers: list[str], port: int, workers: int = 1):
        self.workdir = Path(workdir).resolve()  # nginx reads relative paths from its prefix
        self.servers = servers
        self.port = port
        self.workers = workers
        self.process: subprocess.Popen | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def error_log(self) -> Path:
        return self.workdir / "error.log"

    def config(self) -> str:
        temp = {
            name: self.workdir / name
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        }
        for folder in temp.values():
            folder.mkdir(parents=True, exist_ok=True)
        # As root, nginx would run its workers as "nobody", who can't read the test's folders
        # (mode 700): keep them as the current user. Not root: the directive is not allowed.
        user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
        mime = f"include {MIME_TYPES};" if Path(MIME_TYPES).exists() else ""
        servers = "\n".join(self.servers)
        return f"""
daemon off;
worker_processes {self.workers};
{user}
pid {self.workdir / "nginx.pid"};
error_log {self.error_log} warn;
events {{ worker_connections 1024; }}
http {{
    {mime}
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    {servers}
}}
"""

    def start(self, timeout: float = 15) -> "Nginx":
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(self.config())
        # -e: the log nginx writes to before it has read the config; -p: its prefix folder.
        command = [NGINX, "-p", str(self.workdir), "-c", str(conf), "-e", str(self.error_log)]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx refused the config:\n{check.stderr}")
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited early:\n{self.error_log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nginx did not start listening")

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.headers), response.read()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # SIGTERM to the master: it stops its workers
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
