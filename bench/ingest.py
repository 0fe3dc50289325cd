#!/usr/bin/env python
"""Ingest benchmark: a 300-slice 512x512 16-bit CT (~150 MB) uploaded through the HTTP upload
endpoint by 4 parallel clients against gunicorn, on the embedded default and on PostgreSQL +
SeaweedFS. Prints instances/s and MB/s, and the peak RSS of the workers.

Reference (issue #3): Orthanc 1.10 ingests this study at 238-249 instances/s (about 130 MB/s)
on this machine over its REST API with 2 clients. Target: >= 300 instances/s embedded.

    .venv/bin/python bench/ingest.py [--backend embedded|prod|both] [--clients 4] [--big]
                                     [--profile]
"""

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    backend,
    clone_login,
    cpu_seconds,
    demo_login,
    gunicorn,
    peak_rss_mb,
    profiled,
    synthesize_ct,
    worker_pids,
    workspace,
)

ORTHANC_INSTANCES_PER_S = 243.5  # middle of the 238-249 range quoted in the issue


def run(kind: str, files: list[Path], clients: int, workers: int, profile: bool = False) -> None:
    total_mb = sum(path.stat().st_size for path in files) / 1e6
    with backend(kind) as env, gunicorn(env, workers=workers) as (port, process):
        first = demo_login(port, env)
        sessions = [first] + [clone_login(first) for _ in range(clients - 1)]
        chunks = [files[i::clients] for i in range(clients)]
        # Like a server in service (and Orthanc in the reference figure), measure warm workers:
        # a few small uploads of another study first, so that each worker has run the code once.
        warmup = synthesize_ct(files[0].parent.parent / "warmup", slices=4 * workers, size=64)
        with ThreadPoolExecutor(clients) as pool:
            list(
                pool.map(
                    lambda i: [sessions[i].upload(p) for p in warmup[i::clients]], range(clients)
                )
            )

        def upload_all(index):
            return [sessions[index].upload(path) for path in chunks[index]]

        watch = profiled(process.pid, f"{kind} upload") if profile else nullcontext()
        workers_cpu = cpu_seconds(worker_pids(process.pid))
        client_cpu = time.process_time()
        with watch:
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                results = [r for batch in pool.map(upload_all, range(clients)) for r in batch]
            elapsed = time.perf_counter() - started
        workers_cpu = cpu_seconds(worker_pids(process.pid)) - workers_cpu
        client_cpu = time.process_time() - client_cpu
        outcomes = {}
        for result in results:
            outcome = (
                result["results"][0]["outcome"] if result.get("results") else str(result["status"])
            )
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        rate = len(files) / elapsed
        orthanc = ORTHANC_INSTANCES_PER_S
        print(
            f"[{kind}] {len(files)} instances, {total_mb:.0f} MB, {clients} clients, "
            f"{workers} workers: {elapsed:.2f} s -> {rate:.0f} instances/s, "
            f"{total_mb / elapsed:.0f} MB/s ({rate / orthanc:.2f}x Orthanc's {orthanc:.0f}/s); "
            f"{outcomes}"
        )
        print(
            f"[{kind}] CPU per instance: server workers {1000 * workers_cpu / len(files):.1f} ms, "
            f"this client {1000 * client_cpu / len(files):.1f} ms (2 cores: 300/s leaves 6.7 ms "
            f"for both)"
        )

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(upload_all, range(clients)))
        again = time.perf_counter() - started
        print(
            f"[{kind}] re-upload of the same study (all 'already in your vault'): "
            f"{len(files) / again:.0f} instances/s"
        )
        rss = [peak_rss_mb(pid) for pid in worker_pids(process.pid)]
        print(f"[{kind}] peak RSS per worker: {', '.join(f'{mb:.0f} MB' for mb in rss)}")


def big_file_memory(workers: int) -> None:
    """Peak worker RSS must not grow with file size: upload a ~1 GB multi-frame file."""
    import numpy as np
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
        generate_uid,
    )

    folder = Path(tempfile.mkdtemp(prefix="phr-bench-big-", dir=workspace()))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName = "OT", "BENCH^BIG"
    frames, size = 2000, 512
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames, size, size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.zeros((frames, size, size), np.uint16).tobytes()
    path = folder / "big.dcm"
    ds.save_as(path, enforce_file_format=True)
    del ds
    with backend("embedded") as env, gunicorn(env, workers=workers) as (port, process):
        browser = demo_login(port, env)
        before = {pid: peak_rss_mb(pid) for pid in worker_pids(process.pid)}
        small = synthesize_ct(folder / "small", slices=4)
        for p in small:
            browser.upload(p)
        mid = {pid: peak_rss_mb(pid) for pid in worker_pids(process.pid)}
        started = time.perf_counter()
        result = browser.upload(path)
        elapsed = time.perf_counter() - started
        after = {pid: peak_rss_mb(pid) for pid in worker_pids(process.pid)}
        outcome = result["results"][0]["outcome"]
        print(
            f"[big] {path.stat().st_size / 1e9:.2f} GB multi-frame file: {outcome} in "
            f"{elapsed:.1f} s; worker peak RSS after small files {max(mid.values()):.0f} MB, "
            f"after the 1 GB file {max(after.values()):.0f} MB "
            f"(at start {max(before.values()):.0f} MB)"
        )
    shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["embedded", "prod", "both"], default="both")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument(
        "--profile", action="store_true", help="sample the workers with py-spy (slows them down)"
    )
    parser.add_argument(
        "--big", action="store_true", help="also upload a ~1 GB file and report worker memory"
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="phr-bench-ct-", dir=workspace()))
    started = time.perf_counter()
    files = synthesize_ct(folder, slices=args.slices)
    print(f"synthesised {len(files)} slices in {time.perf_counter() - started:.1f} s")
    try:
        for kind in ["embedded", "prod"] if args.backend == "both" else [args.backend]:
            run(kind, files, args.clients, args.workers, args.profile)
        if args.big:
            big_file_memory(args.workers)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
