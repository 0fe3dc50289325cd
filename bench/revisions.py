"""Run one benchmark on two revisions of the code, side by side, alternating rounds, and print
each figure with its ratio: how a change moved the figures, measured in one run on one machine.

    .venv/bin/python bench/revisions.py --before 01b9928 [--rounds 2] \
        -- bench/viewer.py --only embedded

The `--before` revision is checked out in a temporary git worktree, with this checkout's bench/
copied over it, so that both revisions run the very same benchmark. The benchmark must print a
line `RESULT {json}` of figures (bench/viewer.py and bench/load.py do).
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(checkout: Path, command: list[str]) -> dict:
    process = subprocess.run(
        [sys.executable, *command], cwd=checkout, capture_output=True, text=True, check=False
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        print(process.stdout[-3000:], process.stderr[-3000:], sep="\n")
        raise SystemExit(f"{' '.join(command)} failed in {checkout}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the revision to compare with")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- bench/x.py [options]")
    args = parser.parse_args()
    command = [part for part in args.command if part != "--"]
    before = Path(tempfile.mkdtemp(prefix="phr-before-"))
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(before), args.before],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    try:
        shutil.rmtree(before / "bench")
        shutil.copytree(ROOT / "bench", before / "bench")
        figures: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
        for round_number in range(1, args.rounds + 1):
            order = [("before", before), ("after", ROOT)]
            # Each goes first in turn: whatever the first run of a round leaves behind (a warm
            # page cache, a busy disk) favours neither.
            for label, checkout in order if round_number % 2 else order[::-1]:
                print(f"round {round_number}, {label}: {' '.join(command)}", flush=True)
                for name, value in run(checkout, command).items():
                    figures[label].setdefault(name, []).append(value)
        print(f"\n{'figure':<40}{'before':>10}{'after':>10}{'after/before':>14}  (medians; rounds)")
        for name, values in figures["after"].items():
            earlier = figures["before"].get(name, [float("nan")])
            old, new = statistics.median(earlier), statistics.median(values)
            ratio = new / old if old else float("nan")
            rounds = " / ".join(f"{a:.0f}:{b:.0f}" for a, b in zip(earlier, values, strict=False))
            print(f"{name:<40}{old:>10.1f}{new:>10.1f}{ratio:>13.2f}x  {rounds}")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
