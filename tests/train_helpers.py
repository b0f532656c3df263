"""Helpers shared by test_train*.py and test_evaluate*.py (not a test module).

Prepared folders are written by hand in the ``dataset.py`` contract (train/val/test.parquet +
labels.json), so these tests do not depend on ``intentkit.data.prepare``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

#: Hyper-parameters that teach the tiny random-init ModernBERT the keyword fixture in 40 steps
#: (120 rows, batch 16 -> 8 steps/epoch x 5 epochs); tuned on this 2-core CPU.
FAST = {"epochs": 5, "batch_size": 16, "lr": 1e-2, "warmup_ratio": 0.1, "seed": 0}


def write_prepared(
    path: Path,
    train: Any,
    test: Any,
    val: Any | None = None,
    labels: list[str] | None = None,
    inspect: dict[str, Any] | None = None,
) -> Path:
    """Write a prepared-dataset folder from DataFrames with columns text, label."""
    path.mkdir(parents=True, exist_ok=True)
    train.reset_index(drop=True).to_parquet(path / "train.parquet")
    test.reset_index(drop=True).to_parquet(path / "test.parquet")
    if val is not None:
        val.reset_index(drop=True).to_parquet(path / "val.parquet")
    names = labels if labels is not None else sorted(set(train["label"]))
    (path / "labels.json").write_text(json.dumps(names))
    if inspect is not None:
        (path / "inspect.json").write_text(json.dumps(inspect))
    return path


def keywords_prepared(keywords_jsonl: Path, path: Path, *, with_val: bool = True) -> Path:
    """The keyword fixture split 120/30/30 (train/val/test), shuffled with a fixed seed."""
    import pandas as pd

    df = pd.read_json(keywords_jsonl, lines=True).sample(frac=1.0, random_state=0)
    if with_val:
        return write_prepared(path, df.iloc[:120], df.iloc[150:], df.iloc[120:150])
    return write_prepared(path, df.iloc[:150], df.iloc[150:])


def cli_env() -> dict[str, str]:
    """Environment for subprocess runs: offline, quiet, this interpreter's site-packages."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
    )
    return env


def cli_cmd(*args: str) -> list[str]:
    """``python -m intentkit ARGS`` with the running interpreter."""
    return [sys.executable, "-m", "intentkit", *args]


def run_cli(capsys: Any, *argv: str) -> tuple[int, str]:
    """``intentkit.cli.main(argv)`` in this process; its exit code and captured stderr."""
    from intentkit.cli import main

    code = main(list(argv))
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    """Exit code 2, exactly one ``error:`` line containing every needle, no traceback."""
    assert code == 2, err
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
