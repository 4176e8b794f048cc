"""Fast start: the CLI and a WinRM fix import only what they use (timings live in benchmarks/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY_FOR_WINRM = ("msgraph", "azure", "kiota_abstractions", "ldap3", "paramiko")
HEAVY_FOR_HELP = (*HEAVY_FOR_WINRM, "winrm", "requests", "spnego", "cryptography", "yaml")


def imported_after(code: str, home) -> dict:
    env = {**os.environ, "L1FIX_HOME": str(home)}
    probe = (
        "import sys, json\n" + code + "\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    return {"modules": set(json.loads(proc.stderr.strip().splitlines()[-1])), "stdout": proc.stdout}


def test_help_imports_no_connection_library(home):
    code = (
        "sys.argv = ['l1fix', 'spooler-restart', '--help']\n"
        "from l1fix.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    found = imported_after(code, home)
    assert "spooler-restart" in found["stdout"]
    assert not found["modules"] & set(HEAVY_FOR_HELP)


def test_a_winrm_fix_imports_no_graph_ldap_or_ssh(lab):
    code = "from l1fix import run\nr = run('spooler-restart', 'PC042', profile='lab')\nprint(r.status)"
    found = imported_after(code, lab.home)
    assert found["stdout"].strip() == "fixed"
    assert "winrm" in found["modules"]
    assert not found["modules"] & set(HEAVY_FOR_WINRM)
