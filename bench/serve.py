"""Whole-file serving with 8 concurrent clients, against nginx serving the same files.

    make bench-tools    # nginx and wrk, from Debian
    .venv/bin/python bench/serve.py [--slices 300] [--seconds 5] [--connections 8]

The synthetic CT is uploaded over HTTP into the demo patient's vault on the embedded default,
under gunicorn (4 sync workers) behind a real nginx on loopback running the site file we ship
(deploy/nginx/phr.conf). wrk, a native load client, then fetches the series' files, walking
the list over and over, for a fixed time each:

  (a) nginx serving the same files statically: the reference, measured before and after (b);
  (b) secure links: the signed URLs the study's list (images.json) hands out, served by nginx;
  (b+) the same, plus the list requests themselves (one per series of 300 files, with the
       patient's session cookie), interleaved as the viewer makes them: Django's authorisation
       amortised as in the viewer, which needs no other request. Only files are counted;
  (c) X-Accel-Redirect: /viewer/instances/<id>/, authorised by Django on every request;
  (d) Django streaming /viewer/instances/<id>/ itself, through nginx.

Issue #5's target: (b+) >= 0.80x (a). Prints figures; asserts nothing. The client runs on the
same cores as the servers, for (a) as for the others, so read the ratios rather than the
absolute figures.
"""

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import backend, demo_login, gunicorn, synthesize_ct, workspace
from tests.support import nginx as nginx_support

WRK = "/usr/bin/wrk"
SECURE_PREFIX = "/vault-files/"
ACCEL_PREFIX = "/protected-media/"

# Each wrk thread walks the list of paths from its own starting point. Every `every` requests
# (0: never) it asks for one of the `extra` paths instead, with the cookie: the viewer's
# request for the study's list, before the series' files. No response() callback: handing
# each body to Lua would make wrk, not the server, the bottleneck.
WRK_SCRIPT = """
local paths, extra, every, cookie = {}, {}, 0, nil
local n, sent = 0, 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  if args[2] ~= "" then cookie = args[2] end
  if args[3] ~= "" then for line in io.lines(args[3]) do extra[#extra + 1] = line end end
  every = tonumber(args[4]) or 0
  n = (id * 37) % #paths
end

function request()
  sent = sent + 1
  if every > 0 and sent % (every + 1) == 0 then
    local pick = extra[(sent / (every + 1)) % #extra + 1]
    return wrk.format("GET", pick, { Cookie = cookie })
  end
  n = n % #paths + 1
  -- Files ride without the cookie when there are batch requests, as the viewer's fetcher
  -- sends them (credentials: 'omit'); otherwise every request carries it, if given.
  if every > 0 or cookie == nil then return wrk.format("GET", paths[n]) end
  return wrk.format("GET", paths[n], { Cookie = cookie })
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.bytes,
    summary.duration, errors.status, errors.connect + errors.read + errors.write,
    errors.timeout))
end
"""


def run_wrk(
    workdir: Path,
    origin: str,
    paths: list[str],
    seconds: float,
    connections: int,
    cookie: str = "",
    extra: list[str] | None = None,
    every: int = 0,
) -> dict:
    script = workdir / "walk.lua"
    script.write_text(WRK_SCRIPT)
    listed = workdir / "paths.txt"
    listed.write_text("\n".join(paths) + "\n")
    extra_file = workdir / "extra.txt"
    extra_file.write_text("\n".join(extra or []) + "\n")
    command = [
        WRK,
        f"--threads={min(2, connections)}",
        f"--connections={connections}",
        f"--duration={seconds}s",
        "--timeout=10s",
        f"--script={script}",
        origin,
        "--",
        str(listed),
        cookie,
        str(extra_file) if extra else "",
        str(every),
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", out, re.MULTILINE)
    requests, size, micros, bad_status, socket_errors, timeouts = map(int, match.groups())
    seconds_taken = micros / 1e6
    files = requests * every // (every + 1) if every else requests
    return {
        "requests": requests,
        "files_per_s": files / seconds_taken,
        "mb_per_s": size / 1e6 / seconds_taken,
        "errors": bad_status + socket_errors + timeouts,
    }


def measure(label: str, workdir: Path, origin: str, paths: list[str], args, **options) -> dict:
    # A short warm-up first: gunicorn's workers import lazily, caches fill.
    run_wrk(workdir, origin, paths, 1, args.connections, **options)
    result = run_wrk(workdir, origin, paths, args.seconds, args.connections, **options)
    errors = f"   ERRORS: {result['errors']}" if result["errors"] else ""
    print(
        f"  {label:<44} {result['files_per_s']:8.0f} files/s  {result['mb_per_s']:7.1f} MB/s"
        f"{errors}",
        flush=True,
    )
    return result


def reference_server(port: int, folder: Path) -> str:
    """A plain static nginx server for the same files: what (a) measures."""
    return f"""
server {{
    listen 127.0.0.1:{port};
    location /ct/ {{
        alias {folder}/;
        types {{ }}
        default_type application/dicom;
        sendfile on;
        tcp_nopush on;
        add_header Cache-Control "private, max-age=600, immutable";
        add_header X-Content-Type-Options nosniff;
    }}
}}
"""


@contextmanager
def site_behind_nginx(env: dict, mode_env: dict, workdir: Path, reference: Path, secret: str):
    """gunicorn with `mode_env`, behind a fresh nginx running deploy/nginx/phr.conf, plus the
    static reference server in the same nginx."""
    with gunicorn({**env, **mode_env}) as (port, _process):
        site_port, reference_port = nginx_support.free_port(), nginx_support.free_port()
        site = nginx_support.site_server(
            site_port,
            media_root=Path(env["PHR_VAR_DIR"]) / "media",
            static_root=Path(env["PHR_STATIC_ROOT"]),
            upstream=f"127.0.0.1:{port}",
            secret=secret,
        )
        servers = [site, reference_server(reference_port, reference)]
        # One worker per core, as `worker_processes auto` would give on this machine.
        nginx = nginx_support.Nginx(workdir / "nginx", servers, site_port, workers=2).start()
        try:
            yield port, nginx, f"http://127.0.0.1:{reference_port}"
        finally:
            nginx.stop()


def fill_vault(port: int, env: dict, files: list[Path]) -> dict:
    """Log in as the demo patient and upload the CT; the vault, the login and the session then
    outlive gunicorn's restarts (same database, same SECRET_KEY)."""
    client = demo_login(port, env)
    started = time.monotonic()
    study_id = None
    for path in files:
        result = client.upload(path)
        assert result["status"] == 200, result
        study_id = result["results"][0]["study"]["id"]
    print(f"  uploaded in {time.monotonic() - started:.1f} s", flush=True)
    _, _, body = client.request("GET", f"/viewer/study/{study_id}/images.json")
    ids = [image["id"] for image in json.loads(body)["series"][0]["images"]]
    return {
        "client": client,
        "study_id": study_id,
        "ids": ids,
        "cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items()),
    }


def measure_secure_links(vault: dict, origin: str, workdir: Path, args) -> dict:
    listing = f"/viewer/study/{vault['study_id']}/images.json"
    started = time.monotonic()
    # Straight to gunicorn, as the logged-in patient: the viewer's own request.
    status, _, body = vault["client"].request("GET", listing)
    took = (time.monotonic() - started) * 1000
    assert status == 200, (status, body[:200])
    links = [image["link"] for image in json.loads(body)["series"][0]["images"]]
    print(f"  the study's list with {len(links)} links, alone: {took:.1f} ms", flush=True)
    return {
        "b": measure("(b) secure links, files only", workdir, origin, links, args),
        "b+": measure(
            f"(b+) secure links + the study's list per {len(links)}",
            workdir,
            origin,
            links,
            args,
            cookie=vault["cookie"],
            extra=[listing],
            every=len(links),
        ),
    }


def measure_per_request(label: str, vault: dict, origin: str, workdir: Path, args) -> dict:
    paths = [f"/viewer/instances/{pk}/" for pk in vault["ids"]]
    return measure(label, workdir, origin, paths, args, cookie=vault["cookie"])


def run(args, workdir: Path, files: list[Path]) -> dict:
    secret = secrets.token_hex(32)
    # Secure links win over X-Accel-Redirect when both are set, so each mode has its own run.
    modes = {
        "secure": {"PHR_SECURE_LINK_PREFIX": SECURE_PREFIX, "PHR_SECURE_LINK_SECRET": secret},
        "accel": {"PHR_ACCEL_REDIRECT_PREFIX": ACCEL_PREFIX},
        "django": {},
    }
    results = {}
    vault = None
    with backend("embedded") as env:
        for mode, mode_env in modes.items():
            with site_behind_nginx(env, mode_env, workdir, files[0].parent, secret) as running:
                port, nginx, reference_origin = running
                if vault is None:
                    vault = fill_vault(port, env, files)
                    # The upload left ~150 MB of dirty pages; writing them back during a run
                    # would slow whichever comes first.
                    os.sync()
                if mode == "secure":
                    # The reference before and after the secure links, so that a drift of the
                    # machine in between shows.
                    paths = [f"/ct/{path.name}" for path in files]
                    label = "(a) nginx, static files"
                    results["a"] = measure(label, workdir, reference_origin, paths, args)
                    results.update(measure_secure_links(vault, nginx.origin, workdir, args))
                    label = "(a) nginx, static files, again"
                    results["a2"] = measure(label, workdir, reference_origin, paths, args)
                elif mode == "accel":
                    label = "(c) X-Accel-Redirect, Django per request"
                    results["c"] = measure_per_request(label, vault, nginx.origin, workdir, args)
                else:
                    label = "(d) Django streams, per request"
                    results["d"] = measure_per_request(label, vault, nginx.origin, workdir, args)
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    for tool in (WRK, nginx_support.NGINX):
        if not Path(tool).exists():
            sys.exit(f"{tool} is missing: run `make bench-tools`")

    workdir = Path(tempfile.mkdtemp(prefix="phr-bench-serve-", dir=workspace()))
    try:
        files = synthesize_ct(workdir / "ct", slices=args.slices)
        total = sum(path.stat().st_size for path in files)
        print(
            f"== {len(files)} files, {total / 1e6:.0f} MB; {args.connections} connections, "
            f"{args.seconds:g} s each",
            flush=True,
        )
        results = run(args, workdir, files)
        reference = (results.pop("a")["files_per_s"] + results.pop("a2")["files_per_s"]) / 2
        print(
            f"\n== against nginx serving the same files ({reference:.0f} files/s, the mean of "
            "both runs; target for (b+): >= 0.80x)"
        )
        for key, result in results.items():
            ratio = result["files_per_s"] / reference
            verdict = ("  met" if ratio >= 0.8 else "  NOT met") if key == "b+" else ""
            print(f"  ({key:<2}) {ratio:5.2f}x{verdict}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
