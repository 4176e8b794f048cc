"""Start-up cost of the CLI against `python -c pass`, measured in the same run.

    python benchmarks/startup.py [--runs 15]

Prints the median wall time of each command and its difference from the baseline.
The target: `l1fix --help` and `l1fix spooler-restart --help` within 0.15 s of the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "l1fix --help": [sys.executable, "-m", "l1fix", "--help"],
    "l1fix spooler-restart --help": [sys.executable, "-m", "l1fix", "spooler-restart", "--help"],
}


def median_seconds(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import os

    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("note: PYTHONDONTWRITEBYTECODE is set: l1fix's modules are compiled on every start (~20 ms more)")
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    results = {name: median_seconds(cmd, runs) for name, cmd in COMMANDS.items()}
    base = results["python -c pass (baseline)"]
    for name, seconds in results.items():
        extra_ms = (seconds - base) * 1000
        print(f"{name:<32} median {seconds * 1000:7.1f} ms   +{extra_ms:6.1f} ms   x{seconds / base:5.2f}")


if __name__ == "__main__":
    main()
