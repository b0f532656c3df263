"""Read captured traffic, streaming: intentkit's capture files and SageMaker's data capture.

Two formats, told apart line by line:

* ``intentkit serve --capture`` lines (:mod:`intentkit.serve.capture`): one answered text each.
* SageMaker data capture (``DataCaptureConfig`` on an endpoint): one request each, as described
  in https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-data-capture-endpoint.html ::

    {"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
      "data": "...", "encoding": "JSON" | "BASE64" | "CSV"}, "endpointOutput": {...}},
     "eventMetadata": {"eventId": "...", "inferenceTime": "2024-01-01T00:00:00Z"},
     "eventVersion": "0"}

  The input body is intentkit's ``/invocations`` request (``{"text": str | [str]}`` or JSON
  Lines), the output its answer (``{"predicted_class", "confidence"}`` or a list / JSON Lines),
  so one record may hold several texts; top-3 and the out-of-scope score are not in that answer.

Lines that are not JSON, lack a field, or were cut off (a disk that filled up) are skipped and
counted in :class:`ReadStats`; nothing is kept per row beyond the batch being read.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from intentkit.config import DEFAULT_REJECT_LABEL
from intentkit.errors import DataError

#: Rows per batch of :func:`read_columns`: big enough for numpy to pay off, small enough to bound
#: memory (~10 MB a batch).
BATCH_ROWS = 65536


@dataclass
class ReadStats:
    """What reading saw: files, lines, rows (texts) and the lines skipped (first few named)."""

    files: int = 0
    lines: int = 0
    rows: int = 0
    skipped: int = 0
    examples: list[str] = field(default_factory=list)

    def skip(self, where: str, why: str) -> None:
        """Count one unreadable line; keep the first five reasons for the report."""
        self.skipped += 1
        if len(self.examples) < 5:
            self.examples.append(f"{where}: {why}")


def capture_files(paths: Iterable[str | Path]) -> list[Path]:
    """The ``*.jsonl`` files under ``paths`` (folders searched recursively; hidden files such
    as a capture still being written skipped), in name order per argument."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(
                f
                for f in p.rglob("*.jsonl")
                if not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        elif p.is_file():
            found.append(p)
        else:
            raise DataError(f"CAPTURE {p}: no such file or folder; pass a --capture folder")
    if not found:
        raise DataError(f"CAPTURE {', '.join(map(str, paths))}: no *.jsonl files in it")
    return found


def _body(part: dict[str, Any]) -> list[Any]:
    """The JSON values of one SageMaker endpointInput/endpointOutput (a list: JSON Lines)."""
    data = part["data"]
    raw = base64.b64decode(data).decode("utf-8") if part.get("encoding") == "BASE64" else data
    if "jsonlines" in str(part.get("observedContentType", "")).lower():
        return [json.loads(x) for x in raw.splitlines() if x.strip()]
    value = json.loads(raw)
    return value if isinstance(value, list) else [value]


def _sagemaker_rows(obj: dict[str, Any], reject_label: str) -> list[dict[str, Any]]:
    cap = obj["captureData"]
    inputs = _body(cap["endpointInput"])
    texts = [t for x in inputs for t in ([x["text"]] if isinstance(x["text"], str) else x["text"])]
    answers = _body(cap["endpointOutput"])
    if len(texts) != len(answers):
        raise ValueError(f"{len(texts)} texts but {len(answers)} answers")
    stamp = str(obj.get("eventMetadata", {}).get("inferenceTime", ""))
    return [
        {
            "time": stamp,
            "text": text,
            "answer": str(ans["predicted_class"]),
            "confidence": float(ans["confidence"]),
            "rejected": str(ans["predicted_class"]) == reject_label,
            "oos_score": None,
            "top": [],
            "model": "sagemaker",
        }
        for text, ans in zip(texts, answers, strict=True)
    ]


def _intentkit_row(obj: dict[str, Any]) -> dict[str, Any]:
    # Touch every field monitor needs, so a line missing one is skipped here, not crashed later.
    return {
        "time": str(obj["time"]),
        "text": obj.get("text"),
        "text_hash": obj.get("text_hash"),
        "answer": str(obj["answer"]),
        "confidence": float(obj["confidence"]),
        "rejected": bool(obj["rejected"]),
        "oos_score": obj.get("oos_score"),
        "top": list(obj.get("top") or []),
        "model": str(obj.get("model", "")),
    }


def iter_records(
    paths: Iterable[str | Path], stats: ReadStats, *, reject_label: str = DEFAULT_REJECT_LABEL
) -> Iterator[dict[str, Any]]:
    """One dict per captured text (``time, text, text_hash, answer, confidence, rejected,
    oos_score, top, model``), from either format; unreadable lines are counted in ``stats``.

    ``reject_label`` marks SageMaker answers as rejected (its lines carry only the answer).
    """
    for path in capture_files(paths):
        stats.files += 1
        with path.open("rb") as fh:
            for n, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                stats.lines += 1
                try:
                    obj = json.loads(raw)
                    if "captureData" in obj:
                        rows = _sagemaker_rows(obj, reject_label)
                    else:
                        rows = [_intentkit_row(obj)]
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    why = "cut off" if not raw.endswith(b"\n") else type(exc).__name__
                    stats.skip(f"{path.name}:{n}", f"{why} ({str(exc)[:80]})")
                    continue
                stats.rows += len(rows)
                yield from rows


def _margin(top: list[dict[str, Any]]) -> float:
    if len(top) < 2:
        return math.nan
    return float(top[0]["score"]) - float(top[1]["score"])


def read_columns(
    paths: Iterable[str | Path],
    stats: ReadStats,
    *,
    batch_rows: int = BATCH_ROWS,
    reject_label: str = DEFAULT_REJECT_LABEL,
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of columns for aggregate work (:mod:`intentkit.loop.monitor`): ``time``
    (datetime64[ms], NaT when unreadable), ``answer`` (str), ``confidence``, ``oos_score`` (NaN
    when absent), ``margin`` (top-1 minus top-2 probability, NaN when absent), ``rejected``."""
    names = ("time", "answer", "conf", "score", "margin", "rej")
    cols: dict[str, list[Any]] = {k: [] for k in names}
    for rec in iter_records(paths, stats, reject_label=reject_label):
        cols["time"].append(rec["time"][:23].rstrip("Z"))  # ISO, ms, UTC (numpy takes no zone)
        cols["answer"].append(rec["answer"])
        cols["conf"].append(rec["confidence"])
        score = rec["oos_score"]
        cols["score"].append(math.nan if score is None else float(score))
        cols["margin"].append(_margin(rec["top"]))
        cols["rej"].append(rec["rejected"])
        if len(cols["answer"]) >= batch_rows:
            yield _to_arrays(cols)
            cols = {k: [] for k in cols}
    if cols["answer"]:
        yield _to_arrays(cols)


def _to_arrays(cols: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    try:
        times = np.array(cols["time"], dtype="datetime64[ms]")
    except ValueError:  # one odd stamp: parse one by one, NaT for the odd ones
        times = np.array([_time_or_nat(t) for t in cols["time"]], dtype="datetime64[ms]")
    return {
        "time": times,
        "answer": np.array(cols["answer"], dtype=str),
        "confidence": np.array(cols["conf"], dtype=np.float64),
        "oos_score": np.array(cols["score"], dtype=np.float64),
        "margin": np.array(cols["margin"], dtype=np.float64),
        "rejected": np.array(cols["rej"], dtype=bool),
    }


def _time_or_nat(text: str) -> np.datetime64:
    try:
        return np.datetime64(text.rstrip("Z"), "ms")
    except ValueError:
        return np.datetime64("NaT", "ms")
