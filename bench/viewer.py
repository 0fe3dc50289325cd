"""How fast the viewer shows a 300-slice CT: first image, whole stack, MB/s.

    .venv/bin/python bench/viewer.py [--slices 300] [--only embedded|prod]

For each backend (the embedded default under gunicorn; PostgreSQL + SeaweedFS with presigned
redirects), it uploads the synthetic CT over HTTP as the demo patient, opens the viewer in
headless Chromium and reads the page's own performance marks. Chromium is driven over a bare
DevTools pipe (bench/cdp.py), not Playwright, whose per-request events cost this 2-core
machine a third of a 300-file load: a user's browser has no driver watching it.

    viewer-scripts-loaded -> first-image     (target: <= 100 ms, warm)
    viewer-scripts-loaded -> series-loaded   (all images fetched and decoded; target: <= 2 s)

It also fetches the same 300 URLs with a plain fetch loop (6 at a time) in the same browser,
and the same 300 files from `python -m http.server`, and prints the ratio. On SeaweedFS it also
fetches the 300 presigned URLs directly (the object store's own limit). Prints figures;
asserts nothing.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cdp import Chromium
from bench.common import (
    PYTHON,
    backend,
    demo_login,
    free_port,
    gunicorn,
    synthesize_ct,
    workspace,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
TIMEOUT_S = 120

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
    page = browser.open(context, origin)
    try:
        page.wait_for(ready or "document.readyState === 'complete'", timeout=TIMEOUT_S)
        return page.evaluate(f"({FETCH_LOOP})({json.dumps(urls)})")
    finally:
        page.close()


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
        cold = open_viewer(browser, context, viewer_url)
        results = {"cold": summarise("cold (first open)", cold, total_bytes)}
        fresh = browser.new_context(client.cookies, base)
        warm = open_viewer(browser, fresh, viewer_url)
        results["warm"] = summarise("warm server, empty cache", warm, total_bytes)
        cached = open_viewer(browser, fresh, viewer_url)
        results["cached"] = summarise("warm, browser cache", cached, total_bytes)
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
            # What the object store and the browser can do at best: the same files fetched
            # straight from the presigned URLs the viewer uses, without Django in between.
            direct = fetch_loop(
                browser, loop_context, viewer_url, presigned_urls(client, listing), SERIES_LOADED
            )
            print(
                f"  {'fetch loop, presigned URLs':<28} {direct['ms']:7.0f} ms   "
                f"{direct['bytes'] / 1e6 / (direct['ms'] / 1000):6.1f} MB/s"
            )
            results["direct_loop_ms"] = direct["ms"]
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


def presigned_urls(client, listing: dict) -> list[str]:
    """The object store URLs of the first series' files, asked for as the viewer asks."""
    ids = [image["id"].replace("-", "") for image in listing["series"][0]["images"]]
    step = listing["study"]["files_per_batch"]
    urls = []
    for start in range(0, len(ids), step):
        query = ",".join(ids[start : start + step])
        _, _, body = client.request("GET", f"{listing['study']['files_url']}?ids={query}")
        urls += json.loads(body)["urls"]
    return urls


def tiny_object_urls(env: dict, count: int) -> list[str]:
    """Presigned URLs of `count` 1 KB objects put in the site's bucket for the purpose."""
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=env["PHR_S3_ENDPOINT_URL"],
        aws_access_key_id=env["PHR_S3_ACCESS_KEY"],
        aws_secret_access_key=env["PHR_S3_SECRET_KEY"],
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    bucket = env["PHR_S3_BUCKET"]
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
                    f", whole stack vs presigned loop: {warm['whole_ms'] / direct:.2f}x"
                    if direct
                    else ""
                )
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
