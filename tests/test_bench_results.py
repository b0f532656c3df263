"""bench/RESULTS.md regenerates byte-for-byte from its template and the committed JSON.

Runs bench/results_md.py --check in a subprocess (standard library only, no torch): a figure
edited by hand in RESULTS.md, or a JSON/template change without regenerating, fails here.
"""

from __future__ import annotations

import json
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


def test_summary_cites_only_raw_output_of_a_reproducible_run() -> None:
    """The summary table's figures come from raw benchmark JSON, never from transcribed history."""
    import re

    template = (BENCH / "RESULTS.template.md").read_text("utf-8")
    summary = template.split("## Summary", 1)[1].split("\n## ", 1)[0]
    placeholders = re.findall(r"\{\{(.+?)\}\}", summary)
    assert placeholders, "the summary cites no measured figure"
    aliased = [p for p in placeholders if re.match(r"(table )?\w+:", p)]
    assert not aliased, f"transcribed figures in the summary: {aliased}"
    for p in placeholders:
        name = p.split()[1] if p.startswith("peakshare ") else p.split("#")[0].split()[-1]
        raw = json.loads((BENCH / "results" / f"{name}.json").read_text("utf-8"))
        assert "transcribed" not in str(raw.get("source", "")).lower(), name
    rows = [line for line in summary.splitlines() if line.startswith("| #")]
    assert rows and all("`" in row.rsplit("|", 2)[-2] for row in rows), "a row without a command"
