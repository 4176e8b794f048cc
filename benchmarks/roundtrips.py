"""WS-Man requests per fix, counted by the lab (the auth handshake is counted apart).

    python benchmarks/roundtrips.py

Targets: a fix that needs no confirmation costs at most 5 WS-Man requests on a fresh host;
each further command on the same host at most 3.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from l1fix.actions.spooler import SpoolerRestart
from l1fix.config import load_config
from l1fix.inventory import load_inventory
from l1fix.lab.profile import PROFILE, start_lab
from l1fix.runner import execute
from l1fix.targets.base import connect


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="l1fix-bench-"))
    os.environ["L1FIX_HOME"] = str(home)
    started = start_lab(home, hosts=50)
    lab = started.wsman
    try:
        config = load_config(None, PROFILE)
        for target in ("PC042", "PC001"):
            lab.reset_stats()
            result = execute("spooler-restart", target, {}, config=config)
            stats = lab.stats()
            print(
                f"spooler-restart {target} ({result.status}): {stats['requests']} WS-Man requests "
                f"{stats['by_action']}, {stats['auth_handshakes']} auth handshake"
            )
        target = load_inventory(config.inventory_path).resolve("PC002")
        script = Path(__file__).parents[1] / "src/l1fix/actions/spooler.ps1"
        conn = connect(target, config)
        counts = []
        lab.reset_stats()
        for _ in range(4):
            conn.run_script(
                script, {"action": SpoolerRestart.name, "steps": ["check"], "params": {}, "before": None}, timeout=60
            )
            counts.append(lab.stats()["requests"])
        conn.close()
        steps = [b - a for a, b in zip(counts, counts[1:], strict=False)]
        print(f"one shell, 4 commands: cumulative requests {counts}, each further command costs {steps}")
    finally:
        started.stop()


if __name__ == "__main__":
    main()
