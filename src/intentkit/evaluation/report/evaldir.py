"""Find and read an evaluation: ``MODEL_DIR`` (with ``eval/``) or the evaluation folder itself."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intentkit.errors import DataError

REPORT_FILE = "report.json"
PREDICTIONS_FILE = "predictions.parquet"


@dataclass
class Evaluation:
    """Everything the pages read: ``report.json``, the predictions and the artifact's metadata."""

    eval_dir: Path
    report: dict[str, Any]
    predictions: Any  # pandas.DataFrame, columns of intentkit.evaluation.report.predictions.COLUMNS
    meta: dict[str, Any] = field(default_factory=dict)  # intentkit.json ({} if the model moved)
    model_dir: Path | None = None
    inspect: dict[str, Any] | None = None  # the data folder's inspect.json, when it has one

    @property
    def name(self) -> str:
        """A short display name: the model folder's name (else the evaluation folder's)."""
        if self.model_dir is not None:
            return self.model_dir.name
        return self.eval_dir.name


def find_eval_dir(path: str | Path, *, flag: str = "EVAL_DIR") -> Path:
    """The folder holding ``report.json``: ``path`` itself or ``path/eval``; one-line errors."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(
            f"{flag} {path}: no such folder; pass a model folder evaluated with "
            "`intentkit evaluate` or its evaluation folder"
        )
    for candidate in (path, path / "eval"):
        if (candidate / REPORT_FILE).is_file():
            if not (candidate / PREDICTIONS_FILE).is_file():
                raise DataError(
                    f"{flag} {candidate}: has {REPORT_FILE} but no {PREDICTIONS_FILE} (an older "
                    "evaluation); re-run `intentkit evaluate MODEL_DIR --data DIR`"
                )
            return candidate
    raise DataError(
        f"{flag} {path}: no {REPORT_FILE} in it or in {path / 'eval'}; "
        "run `intentkit evaluate MODEL_DIR --data DIR` first"
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # optional context (inspect.json, intentkit.json): the page says it is missing
    return value if isinstance(value, dict) else None


def load_evaluation(path: str | Path, *, flag: str = "EVAL_DIR") -> Evaluation:
    """Read an evaluation from ``path`` (a model folder with ``eval/`` or the evaluation folder).

    The artifact's ``intentkit.json`` is looked for in ``path`` itself, the ``model_dir`` that
    ``report.json`` records, then the evaluation folder's parent (the default ``MODEL_DIR/eval``
    layout, so a copied model folder still finds it); the data folder's ``inspect.json`` through
    ``report.json``'s ``data``. Both are optional: the page marks what is missing.
    """
    import pandas as pd

    eval_dir = find_eval_dir(path, flag=flag)
    report = _read_json(eval_dir / REPORT_FILE)
    if report is None or "per_class" not in report:
        raise DataError(
            f"{flag} {eval_dir / REPORT_FILE}: not a report written by `intentkit evaluate`; "
            "re-run the evaluation"
        )
    try:
        predictions = pd.read_parquet(eval_dir / PREDICTIONS_FILE)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{flag} {eval_dir / PREDICTIONS_FILE}: unreadable ({exc}); re-run `intentkit evaluate`"
        ) from exc
    meta: dict[str, Any] = {}
    model_dir = None
    recorded = [Path(report["model_dir"])] if report.get("model_dir") else []
    for candidate in (Path(path), *recorded, eval_dir.parent):
        found = _read_json(candidate / "intentkit.json")
        if found is not None:
            meta, model_dir = found, candidate
            break
    inspect = None
    if report.get("data"):
        inspect = _read_json(Path(report["data"]) / "inspect.json")
    return Evaluation(eval_dir, report, predictions, meta, model_dir, inspect)
