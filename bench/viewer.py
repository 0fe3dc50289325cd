"""How fast the viewer shows a 300-slice CT: first image, whole stack, MB/s.

    .venv/bin/python bench/viewer.py [--slices 300] [--only embedded|prod]

For each backend (the embedded default under gunicorn; PostgreSQL + SeaweedFS with presigned
redirects), it uploads the synthetic CT over HTTP as the demo patient, opens the viewer in
headless Chromium and reads the page's own performance marks. Chromium is driven over a bare
DevTools pipe (bench/cdp.py), not Playwright, whose per-request events cost this 2-core
machine a third of a 300-file load: a user's browser has no driver watching it.

    viewer-scripts-loaded -> first-image     (target: <= 100 ms, warm)
    viewer-scripts-loaded -> series-loaded   (all images fetched and decoded; target: <= 2 s)

as the patient, and as a doctor holding a share (whose every batch is in the access log).

It also fetches the same 300 URLs with a plain fetch loop (6 at a time) in the same browser,
and the same 300 files from `python -m http.server`, and prints the ratio.

On SeaweedFS the first open has the series' bundle built in the background
(phr/vault/bundles.py); the bench waits until it is stored, then SETTLE_S seconds (default 5:
the machine is still writing the 158 MB it just stored, as a doctor opening the study later
would not see), and opens the viewer again. It also fetches the bundle in six ranges and the
300 files as 300 presigned objects, directly from the store (its own limits), and 300 objects
of 1 KB (the browser's cost per request). Prints figures; asserts nothing.
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
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cdp import Chromium
from bench.common import (
    PYTHON,
    Browser,
    backend,
    demo_login,
    free_port,
    gunicorn,
    manage,
    synthesize_ct,
    workspace,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
TIMEOUT_S = 120
SETTLE_S = float(os.environ.get("SETTLE_S", "5"))

# Fetches every URL, six at a time (a browser's connections per host), reading each body.
FETCH_LOOP = """async (urls) => {
  const started = performance.now();
  let bytes = 0;
  let next = 0;
  async function worker() {
    while (next < urls.length) {
      const url = urls[next++];
      const response = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
      // Not `bytes += (await ...)`: that reads `bytes` before the await and loses other
      // workers' additions.
      const body = await response.arrayBuffer();
      bytes += body.byteLength;
    }
  }
  await Promise.all(Array.from({ length: 6 }, worker));
  return { ms: performance.now() - started, bytes };
}"""

# Fetches one object in six ranges at once (a browser's connections per host), reading each body.
RANGES_LOOP = """async ([url, size]) => {
  const started = performance.now();
  const step = Math.ceil(size / 6);
  const parts = await Promise.all(Array.from({ length: 6 }, async (_, n) => {
    const last = Math.min(size, (n + 1) * step) - 1;
    const range = { Range: `bytes=${n * step}-${last}` };
    const response = await fetch(url, { headers: range, cache: 'no-store', credentials: 'omit' });
    return (await response.arrayBuffer()).byteLength;
  }));
  return { ms: performance.now() - started, bytes: parts.reduce((a, b) => a + b, 0) };
}"""

SERIES_LOADED = "performance.getEntriesByName('series-loaded').length > 0"

MARKS = """Object.fromEntries(
  ['viewer-scripts-loaded', 'first-image', 'series-loaded'].map(
    (name) => [name, performance.getEntriesByName(name)[0]?.startTime ?? null]))"""
# What the page says when the viewer can't start or an image fails (the bench has no console).
PAGE_MESSAGES = (
    "[...document.querySelectorAll('.vw-message:not([hidden])')].map((m) => m.textContent)"
)


def open_viewer(browser: Chromium, context: str, url: str) -> dict:
    page = browser.open(context, url)
    try:
        page.wait_for(SERIES_LOADED, timeout=TIMEOUT_S)
        marks = page.evaluate(MARKS)
        print("  marks:", marks)
        return marks
    finally:
        for message in page.evaluate(PAGE_MESSAGES):
            print("  the page says:", message[:300])
        page.close()


def fetch_loop(
    browser: Chromium, context: str, origin: str, urls: list[str], ready: str | None = None
) -> dict:
    return browser_loop(browser, context, origin, FETCH_LOOP, urls, ready)


def browser_loop(browser, context, origin, loop: str, argument, ready=SERIES_LOADED) -> dict:
    """Run one of the loops above in a page of `origin`, once `ready` holds there."""
    page = browser.open(context, origin)
    try:
        page.wait_for(ready or "document.readyState === 'complete'", timeout=TIMEOUT_S)
        return page.evaluate(f"({loop})({json.dumps(argument)})")
    finally:
        page.close()


def report_loop(label: str, loop: dict) -> None:
    mb_per_s = loop["bytes"] / 1e6 / (loop["ms"] / 1000)
    print(f"  {label:<28} {loop['ms']:7.0f} ms   {mb_per_s:6.1f} MB/s")


def summarise(label: str, marks: dict, total_bytes: int) -> dict:
    start = marks["viewer-scripts-loaded"]
    first = marks["first-image"] - start
    whole = marks["series-loaded"] - start
    mbps = total_bytes / 1e6 / (whole / 1000)
    print(
        f"  {label:<28} first image {first:7.0f} ms   whole stack {whole:7.0f} ms   "
        f"{mbps:6.1f} MB/s"
    )
    return {"first_ms": first, "whole_ms": whole, "mb_per_s": mbps}


def run_backend(kind: str, files: list[Path], browser: Chromium) -> dict:
    total_bytes = sum(path.stat().st_size for path in files)
    print(f"\n== {kind}: {len(files)} slices, {total_bytes / 1e6:.0f} MB")
    with backend(kind) as env, gunicorn(env) as (port, _process):
        client = demo_login(port, env)
        study_id = None
        for path in files:
            result = client.upload(path)
            assert result["status"] == 200, result
            study_id = result["results"][0]["study"]["id"]
        base = f"http://127.0.0.1:{port}"
        context = browser.new_context(client.cookies, base)
        viewer_url = f"{base}/viewer/study/{study_id}/"
        cold_started = time.monotonic()
        cold = open_viewer(browser, context, viewer_url)
        results = {"cold": summarise("cold (first open)", cold, total_bytes)}
        if kind == "prod":
            # The first open has the series' bundle built in the background, for the next ones.
            built = wait_for_bundle(env) - cold_started
            print(f"  {'bundle stored':<28} {built * 1000:7.0f} ms after the first open began")
            time.sleep(SETTLE_S)
        fresh = browser.new_context(client.cookies, base)
        warm = open_viewer(browser, fresh, viewer_url)
        results["warm"] = summarise("warm server, empty cache", warm, total_bytes)
        cached = open_viewer(browser, fresh, viewer_url)
        results["cached"] = summarise("warm, browser cache", cached, total_bytes)
        # A doctor holding a share: the same images, each batch also written to the patient's
        # access log, and (behind nginx or S3) links signed a batch at a time.
        doctor = doctor_browser(port, env, study_id)
        doctor_context = browser.new_context(doctor.cookies, base)
        as_doctor = open_viewer(browser, doctor_context, viewer_url)
        results["doctor"] = summarise("a doctor, empty cache", as_doctor, total_bytes)
        browser.close_context(doctor_context)
        _, _, body = client.request("GET", f"/viewer/study/{study_id}/images.json")
        listing = json.loads(body)
        urls = [image["url"] for image in listing["series"][0]["images"]]
        loop_context = browser.new_context(client.cookies, base)
        # From the viewer page, once it is idle: its CSP lets fetches follow the redirects to
        # the object store.
        loop = fetch_loop(browser, loop_context, viewer_url, urls, ready=SERIES_LOADED)
        print(
            f"  {f'fetch loop, {len(urls)} URLs':<28} {loop['ms']:7.0f} ms   "
            f"{loop['bytes'] / 1e6 / (loop['ms'] / 1000):6.1f} MB/s"
        )
        results["fetch_loop_ms"] = loop["ms"]
        if kind == "prod":
            # What the object store and the browser can do at best, without Django in between:
            # the series' bundle in six ranges, as the viewer fetches it now; and the same files
            # as 300 objects, as it fetched them before bundles.
            bundle_url, bundle_size = bundle_of_first_series(client, env, listing)
            direct = browser_loop(
                browser, loop_context, viewer_url, RANGES_LOOP, [bundle_url, bundle_size]
            )
            report_loop("bundle, six ranges", direct)
            results["direct_loop_ms"] = direct["ms"]
            per_file = browser_loop(
                browser, loop_context, viewer_url, FETCH_LOOP, file_object_urls(env)
            )
            report_loop(f"fetch loop, {len(urls)} objects", per_file)
            # The browser's own cost per request, bytes apart: as many 1 KB objects from the
            # same store. On a 2-core machine this alone is a third or more of the loop above.
            tiny = fetch_loop(
                browser, loop_context, viewer_url, tiny_object_urls(env, len(urls)), SERIES_LOADED
            )
            label = f"fetch loop, {len(urls)} x 1 KB"
            print(f"  {label:<28} {tiny['ms']:7.0f} ms   (per-request cost)")
        for ctx in (context, fresh, loop_context):
            browser.close_context(ctx)
        return results


SHARE = """
from datetime import timedelta
from django.utils import timezone
from phr.sharing import services
from phr.vault.models import Study
study = Study.objects.get(pk="{study_id}")
_, secrets = services.create_share(
    study.owner, [study], label="Dr Bench", expires_at=timezone.now() + timedelta(days=1)
)
print(secrets.code)
"""


def doctor_browser(port: int, env: dict, study_id: str) -> Browser:
    """A doctor's browser that has opened a share of the study with its code."""
    code = manage(env, "shell", "-c", SHARE.format(study_id=study_id)).split()[-1]
    doctor = Browser(port)
    status, headers, _ = doctor.post_form("/access", {"code": code, "pin": ""})
    assert status == 302 and headers["Location"] == "/shared/", "the share did not open"
    return doctor


def bundle_of_first_series(client, env: dict, listing: dict) -> tuple[str, int]:
    """The presigned URL and size of the first series' bundle, asked for as the viewer asks."""
    ids = [image["id"].replace("-", "") for image in listing["series"][0]["images"]]
    _, _, body = client.request("GET", f"{listing['study']['files_url']}?ids={','.join(ids[:100])}")
    answer = json.loads(body)
    if not answer.get("ranges"):
        raise RuntimeError("the site answered without a bundle")
    bucket_key = urlsplit(answer["urls"][0]).path.split("/", 2)[2]
    size = s3_client(env).head_object(Bucket=env["PHR_S3_BUCKET"], Key=bucket_key)["ContentLength"]
    return answer["urls"][0], size


def wait_for_bundle(env: dict, timeout: float = TIMEOUT_S) -> float:
    """Wait until a series bundle is in the bucket; when it was seen (time.monotonic())."""
    s3, deadline = s3_client(env), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if s3.list_objects_v2(Bucket=env["PHR_S3_BUCKET"], Prefix="bundles/").get("KeyCount"):
            return time.monotonic()
        time.sleep(0.05)
    raise TimeoutError("no series bundle was built")


def s3_client(env: dict):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=env["PHR_S3_ENDPOINT_URL"],
        aws_access_key_id=env["PHR_S3_ACCESS_KEY"],
        aws_secret_access_key=env["PHR_S3_SECRET_KEY"],
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def file_object_urls(env: dict) -> list[str]:
    """Presigned URLs of every DICOM file in the bucket, one object each."""
    s3, bucket = s3_client(env), env["PHR_S3_BUCKET"]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="vault/")
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    return [
        s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600
        )
        for key in keys
        if key.endswith(".dcm")
    ]


def tiny_object_urls(env: dict, count: int) -> list[str]:
    """Presigned URLs of `count` 1 KB objects put in the site's bucket for the purpose."""
    s3, bucket = s3_client(env), env["PHR_S3_BUCKET"]
    urls = []
    for number in range(count):
        key = f"bench-tiny/{number}"
        s3.put_object(Bucket=bucket, Key=key, Body=b"\0" * 1024)
        params = {"Bucket": bucket, "Key": key}
        urls.append(s3.generate_presigned_url("get_object", Params=params, ExpiresIn=600))
    return urls


def static_server_loop(files: list[Path], browser: Chromium) -> float:
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=files[0].parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(1)
        context = browser.new_context()
        paths = [f"/{path.name}" for path in files]
        loop = fetch_loop(browser, context, f"http://127.0.0.1:{port}/", paths)
        browser.close_context(context)
        print(
            f"\n== python -m http.server, same files\n  {f'fetch loop, {len(files)} files':<28} "
            f"{loop['ms']:7.0f} ms   {loop['bytes'] / 1e6 / (loop['ms'] / 1000):6.1f} MB/s"
        )
        return loop["ms"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--only", choices=["embedded", "prod"])
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="phr-bench-viewer-", dir=workspace()))
    try:
        files = synthesize_ct(workdir / "ct", slices=args.slices)
        browser = Chromium(CHROMIUM, CHROMIUM_ARGS)
        try:
            static_ms = static_server_loop(files, browser)
            kinds = [args.only] if args.only else ["embedded", "prod"]
            results = {kind: run_backend(kind, files, browser) for kind in kinds}
        finally:
            browser.close()
        print("\n== summary (targets: first image <= 100 ms warm, whole stack <= 2000 ms)")
        for kind, result in results.items():
            warm = result["warm"]
            direct = result.get("direct_loop_ms")
            print(
                f"  {kind:<9} first {warm['first_ms']:.0f} ms "
                f"({'met' if warm['first_ms'] <= 100 else 'NOT met'}), whole "
                f"{warm['whole_ms']:.0f} ms ({'met' if warm['whole_ms'] <= 2000 else 'NOT met'}), "
                f"fetch loop vs http.server: {result['fetch_loop_ms'] / static_ms:.2f}x"
                + (
                    f", whole stack vs the bundle's six ranges: {warm['whole_ms'] / direct:.2f}x"
                    if direct
                    else ""
                )
            )
        figures = {
            f"{kind} {run} {what}": value
            for kind, result in results.items()
            for run in ("warm", "doctor")
            for what, value in result[run].items()
        }
        print("RESULT " + json.dumps(figures))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
