"""bench/RESULTS.md regenerates byte-for-byte from its template and the committed JSON.

Runs bench/results_md.py --check in a subprocess (standard library only, no torch): a figure
edited by hand in RESULTS.md, or a JSON/template change without regenerating, fails here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_results_md_regenerates_from_committed_json() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(BENCH / "results_md.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch" not in {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
