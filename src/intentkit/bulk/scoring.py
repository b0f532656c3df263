"""Bulk prediction: a file of any size in, one scored row per text out, resumable after a kill.

``intentkit predict --model M --file BIG --output OUT`` calls :func:`predict_file`. The input is
read record by record (:mod:`intentkit.bulk.readers`), every ``chunk_size`` texts go to
:meth:`Predictor.logits` in one call, which sorts them by token length and cuts batches of
``batch_size`` (little padding); the rows, back in input order, go to a writer
(:mod:`intentkit.bulk.writers`). Memory holds one chunk.

Resume design (kill -9 at any instant is safe). Per chunk, in this order:

1. append the chunk's rows to the output (JSONL bytes, or one Parquet part file written to a
   temp name and renamed) and its bad lines to ``OUT.errors.jsonl``; fsync both;
2. atomically replace ``OUT.progress.json`` (temp file, fsync, rename) with the new commit
   point: input position (byte offset and line, or Parquet row), output size / part count,
   errors size, counts.

Before the first chunk the state file is written, so an output never exists without one. A
resumed run checks the input is the same file (size, mtime, SHA-256 of the first MiB), the same
model and column, truncates the output and errors file to the commit point (dropping a chunk
half-written after it) and reads on from the committed input position: no row is lost or
written twice. The state's ``complete`` flag makes the final Parquet merge and clean-up
restartable too.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intentkit.bulk.readers import Reader, fingerprint, input_kind, open_reader
from intentkit.bulk.writers import JsonlSink, ParquetSink, output_kind, parts_dir
from intentkit.errors import ConfigError, DataError, OutputExistsError
from intentkit.fsutil import atomic_write_json

STATE_VERSION = 1
#: Bad line numbers kept for the summary; the full list is in OUT.errors.jsonl.
FIRST_ERRORS = 10


@dataclass
class BulkResult:
    """What a :func:`predict_file` run did (counts include the rows of resumed runs)."""

    rows: int  #: rows in the output
    skipped: int  #: bad lines skipped
    first_errors: list[int] = field(default_factory=list)  #: their first line numbers
    seconds: float = 0.0  #: wall time of this run
    texts_this_run: int = 0  #: texts predicted by this run (not by earlier, resumed ones)
    output: Path | None = None
    errors_file: Path | None = None  #: every bad line with its reason, when there were any
    note: str | None = None  #: the text column detection, when it was detected

    @property
    def texts_per_s(self) -> float:
        """Texts predicted per second by this run."""
        return self.texts_this_run / self.seconds if self.seconds else 0.0


def progress_path(output: Path) -> Path:
    """The state file of an output: ``OUT.progress.json``."""
    return output.with_name(output.name + ".progress.json")


def errors_path(output: Path) -> Path:
    """Where bad lines are listed: ``OUT`` with suffix ``.errors.jsonl``."""
    return output.with_name(output.stem + ".errors.jsonl")


class _StdoutSink:
    """JSON lines to stdout (no ``--output``): no commit point, so no resume."""

    committed = 0

    def write(self, rows: list[dict[str, Any]]) -> None:
        import json

        sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    def commit(self) -> int:
        sys.stdout.flush()
        return 0

    def finish(self) -> None:
        sys.stdout.flush()


def _start_state(
    file: Path, output: Path | None, *, resume: bool, force: bool, ident: dict[str, Any]
) -> dict[str, Any]:
    """The state to start from: a fresh one, or the committed one of an interrupted run."""
    fresh = {"version": STATE_VERSION, **ident, "position": [0, 0], "rows": 0, "skipped": 0}
    fresh |= {"first_errors": [], "output_committed": 0, "errors_committed": 0, "complete": False}
    if output is None:
        if resume:
            raise ConfigError("--resume needs --output OUT (stdout cannot be resumed)")
        return fresh
    state_file = progress_path(output)
    ours = [p for p in (output, state_file, parts_dir(output)) if p.exists()]
    if resume and state_file.is_file():
        import json

        try:
            state = json.loads(state_file.read_text("utf-8"))
        except ValueError as exc:
            raise DataError(f"--resume: {state_file} is not JSON; rerun with --force") from exc
        if state.get("version") != STATE_VERSION:
            raise ConfigError(f"--resume: {state_file} is from another version; use --force")
        if state["input"] != ident["input"]:
            raise ConfigError(
                f"--resume: --file {file} is not the input of the interrupted run "
                f"({state['input']['path']}, same size, mtime and first MiB); pass that file, "
                "or --force to start over"
            )
        for key, flag in (("model", "--model"), ("text_column", "--text-column")):
            if state[key] != ident[key]:
                raise ConfigError(
                    f"--resume: the interrupted run used {flag} {state[key]}, not {ident[key]}; "
                    "pass the same, or --force to start over"
                )
        if state["reject"] != ident["reject"]:
            raise ConfigError("--resume: pass --no-reject exactly as the interrupted run did")
        return state
    if resume and ours:
        raise OutputExistsError(
            f"--resume: {output} has no {state_file.name} (it is complete, or not written by "
            "intentkit predict); pass --force to redo it or choose another --output"
        )
    if ours and not force:
        hint = "--resume to continue the interrupted run, " if state_file.exists() else ""
        raise OutputExistsError(
            f"--output {output} exists; pass {hint}--force to overwrite it, or choose another path"
        )
    for path in [*ours, errors_path(output)]:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return fresh


def _progress_bar(reader: Reader, file: Path) -> Any:
    """A rich progress bar on stderr (fraction of the file, texts, texts/s, ETA); None when
    stderr is not a terminal (a log file gets the summary line, not bar redraws)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class TextsPerSecond(ProgressColumn):
        """Texts predicted by this run per second of it (the bar itself moves in bytes)."""

        def render(self, task: Any) -> Text:
            rate = task.fields["texts"] / task.elapsed if task.elapsed else 0.0
            return Text(f"{rate:,.0f} texts/s", style="progress.data.speed")

    # stderr, so that stdout can carry the JSON lines when there is no --output.
    console = Console(stderr=True)
    if not console.is_terminal:
        return None
    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(bar_width=20),
        TaskProgressColumn(),
        TextColumn("{task.fields[texts]:,} texts"),
        TextsPerSecond(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    bar.add_task(f"predicting {file.name}", total=reader.total, completed=reader.done, texts=0)
    return bar


def _rows(predictor: Any, lines: list[int], texts: list[str], batch_size: int) -> list[dict]:
    """Scored rows for one chunk, in input order (``logits`` length-buckets internally)."""
    if getattr(predictor, "oos_stats", None) is None:  # softmax scorer: logits are enough
        logits, oos_score = predictor.logits(texts, batch_size=batch_size), None
    else:
        logits, oos_score = predictor.outputs(texts, batch_size=batch_size)
    answers = predictor.decide(logits, oos_score=oos_score)
    return [
        {
            "line": line,
            "text": text,
            "predicted_class": a["label"],
            "confidence": a["confidence"],
            # The answer differs from the top class only when rejection replaced it.
            "rejected": a["label"] != a["scores"][0]["label"],
        }
        for line, text, a in zip(lines, texts, answers, strict=True)
    ]


def predict_file(
    model: str | Path | Any,
    file: str | Path,
    output: str | Path | None,
    *,
    text_column: str | None = None,
    on_error: str = "skip",
    resume: bool = False,
    force: bool = False,
    batch_size: int = 64,
    chunk_size: int = 4096,
    backend: str = "auto",
    reject: bool = True,
    progress: bool = True,
) -> BulkResult:
    """Score every text of ``file`` into ``output`` (JSONL or Parquet; None: JSON lines on stdout).

    Args:
        model: an artifact folder, or a loaded :class:`~intentkit.inference.predictor.Predictor`.
        file: ``.txt`` (one text per line, blank lines skipped), ``.csv``, ``.tsv``, ``.jsonl``
            or ``.parquet``; read as a stream whatever its size.
        output: ``.jsonl`` or ``.parquet``; rows ``{line, text, predicted_class, confidence,
            rejected}`` in input order. Refused if it exists, unless ``resume`` or ``force``.
        text_column: the column of CSV/TSV/JSONL/Parquet input; detected when None.
        on_error: ``skip`` a bad line (listed in ``OUT.errors.jsonl``) or ``fail`` on it with
            a :class:`~intentkit.errors.DataError` naming its line, rows before it committed.
        resume: continue an interrupted run from ``OUT.progress.json``.
        force: overwrite an existing output.
        batch_size: texts per forward pass.
        chunk_size: texts per committed chunk (length-sorted within it; what a kill may redo).
        backend: ``auto`` (ONNX Runtime on CPU when installed), ``onnx`` or ``torch``; only
            when ``model`` is a folder.
        reject: apply out-of-scope rejection (``--no-reject`` turns it off); only when
            ``model`` is a folder (a Predictor keeps its own setting).
        progress: show a progress bar and notes on stderr.
    """
    file = Path(file)
    output = Path(output) if output is not None else None
    if on_error not in ("skip", "fail"):
        raise ConfigError(f"--on-error must be skip or fail, got {on_error}")
    if batch_size < 1 or chunk_size < 1:
        raise ConfigError("--batch-size and --chunk-size must be at least 1")
    if resume and force:
        raise ConfigError("pass --resume or --force, not both")
    if not file.is_file():
        raise DataError(f"--file {file}: no such file; check the path")
    input_kind(file)
    if output is not None:
        output_kind(output)
        if output.resolve() == file.resolve():
            raise ConfigError(f"--output {output} is the input file; choose another path")
    from_dir = isinstance(model, str | Path)
    if from_dir:
        from intentkit.artifact import check_artifact_dir

        check_artifact_dir(model)  # cheap, and before --force removes anything
    model_id = str(Path(model).resolve()) if from_dir else str(model.path)
    reject = reject if from_dir else bool(model.reject)
    # Detect the column now (and fail on a bad --text-column) before any file is touched.
    probe = open_reader(file, text_column)
    probe.close()
    ident = {"input": {"path": str(file.resolve()), **fingerprint(file)}, "model": model_id}
    ident |= {"text_column": probe.column, "reject": reject}
    state = _start_state(file, output, resume=resume, force=force, ident=ident)

    if from_dir:
        from intentkit.export.loader import load_predictor

        predictor = load_predictor(model, reject=reject, backend=backend)
    else:
        predictor = model
    reader = open_reader(file, text_column, *state["position"])
    sink: Any = _StdoutSink()
    errors: JsonlSink | None = None
    state_file = progress_path(output) if output is not None else None
    if state_file is not None and not state_file.exists():
        atomic_write_json(state_file, state)  # first: an output never exists without its state
    if output is not None and not state["complete"]:
        sink_cls = ParquetSink if output_kind(output) == "parquet" else JsonlSink
        sink = sink_cls(output, state["output_committed"])
        errors = JsonlSink(errors_path(output), state["errors_committed"], lazy=True)

    lines: list[int] = []
    texts: list[str] = []
    bad: list[dict[str, Any]] = []
    done_this_run = 0
    t0 = time.perf_counter()

    def commit(position: tuple[int, int]) -> None:
        nonlocal done_this_run, lines, texts, bad
        if texts:
            sink.write(_rows(predictor, lines, texts, batch_size))
        state["output_committed"] = sink.commit()
        if errors is not None:
            errors.write(bad)
            state["errors_committed"] = errors.commit()
        state["rows"] += len(texts)
        state["skipped"] += len(bad)
        room = max(0, FIRST_ERRORS - len(state["first_errors"]))
        state["first_errors"] += [b["line"] for b in bad[:room]]
        state["position"] = list(position)
        if state_file is not None:
            atomic_write_json(state_file, state)
        done_this_run += len(texts)
        lines, texts, bad = [], [], []

    bar = _progress_bar(reader, file) if progress else None
    failed = True
    try:
        if progress and reader.note:
            print(f"note: {reader.note}", file=sys.stderr)
        if bar is not None:
            bar.start()
        if not state["complete"]:
            for item in reader:
                if item.error is not None:
                    if on_error == "fail":
                        commit(reader.start)
                        raise DataError(_fail_message(file, output, item.line, item.error))
                    bad.append({"line": item.line, "error": item.error})
                    continue
                lines.append(item.line)
                texts.append(item.text)  # type: ignore[arg-type]
                if len(texts) >= chunk_size:
                    commit(reader.position)
                    if bar is not None:
                        bar.update(bar.task_ids[0], completed=reader.done, texts=done_this_run)
            commit(reader.position)
            # Parquet: the merge renames OUT into place; only then is the run marked complete,
            # so a kill during the merge redoes the merge (the parts are still there).
            sink.finish()
            if errors is not None:
                errors.finish()
            state["complete"] = True
            if state_file is not None:
                atomic_write_json(state_file, state)
        failed = False
    finally:
        reader.close()
        if bar is not None:
            bar.update(bar.task_ids[0], completed=reader.done, texts=done_this_run)
            bar.live.transient = failed  # an error stays the only line on stderr
            bar.stop()
    if output is not None:
        shutil.rmtree(parts_dir(output), ignore_errors=True)
        progress_path(output).unlink(missing_ok=True)
    err_file = errors_path(output) if output is not None and state["skipped"] else None
    return BulkResult(
        rows=state["rows"],
        skipped=state["skipped"],
        first_errors=state["first_errors"],
        seconds=time.perf_counter() - t0,
        texts_this_run=done_this_run,
        output=output,
        errors_file=err_file,
        note=reader.note,
    )


def _fail_message(file: Path, output: Path | None, line: int, error: str) -> str:
    """The one-line ``--on-error fail`` error: the line, why, and the two ways on."""
    where = f"--file {file} line {line}: {error}"
    if output is None:
        return f"{where}; fix that line, or pass --on-error skip to skip bad lines"
    return (
        f"{where}; the rows before it are committed: fix the line and rerun with --force, or "
        "skip it with --resume --on-error skip"
    )


def summary_line(result: BulkResult) -> str:
    """One line for the end of a run: rows, speed, and the bad lines skipped."""
    where = f" -> {result.output}" if result.output is not None else ""
    text = (
        f"{result.rows:,} rows{where}; this run predicted {result.texts_this_run:,} texts in "
        f"{result.seconds:.1f} s ({result.texts_per_s:,.0f} texts/s)"
    )
    if result.skipped:
        more = ", ..." if result.skipped > len(result.first_errors) else ""
        lines = ", ".join(map(str, result.first_errors)) + more
        listed = f" (all in {result.errors_file})" if result.errors_file else ""
        text += f"; skipped {result.skipped:,} bad lines: {lines}{listed}"
    return text
