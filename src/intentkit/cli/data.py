"""``intentkit data prepare``, ``inspect``, ``add`` and ``sample``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from intentkit.cli.app import data_app


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


@data_app.command("prepare")
def prepare_cmd(
    source: Annotated[
        str,
        typer.Argument(
            help="Bundled name (clinc150, clinc150-travel, banking77), a CSV/TSV/JSON/JSONL/"
            "Parquet file, a folder saved with datasets.save_to_disk, or a Hugging Face "
            "dataset id (owner/name, owner/name:config, hf:name).",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.", show_default=False)],
    text_column: Annotated[
        str | None,
        typer.Option(help="Text column (default: detect text, instruction, utterance, ...)."),
    ] = None,
    label_column: Annotated[
        str | None,
        typer.Option(help="Label column (default: detect label, category, intent, ...)."),
    ] = None,
    test_size: Annotated[
        float | None,
        typer.Option(help="Test share for sources without a test split (default 0.2)."),
    ] = None,
    val_size: Annotated[
        float | None, typer.Option(help="Validation share; 0 = no val split (default 0).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the stratified split (default 42).")
    ] = None,
    min_per_label: Annotated[
        int | None, typer.Option(help="Labels with fewer rows are an error (default 2).")
    ] = None,
    include_oos: Annotated[
        bool, typer.Option("--include-oos", help="CLINC150: keep out-of-scope rows as 'oos'.")
    ] = False,
    resplit: Annotated[
        bool, typer.Option("--resplit", help="Pool the source's official splits, split anew.")
    ] = False,
    preset: Annotated[
        str | None, typer.Option(help="Preset whose data section fills defaults.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out.")] = False,
) -> None:
    """Clean, dedupe and split a dataset into OUT (train/val/test.parquet, labels.json, stats.json).

    Whitespace is stripped; empty texts, missing labels, duplicates, texts with conflicting
    labels and val/test texts that also occur in train are removed and counted in stats.json.
    Sources with official splits (bundled datasets, hub datasets with several splits) keep them.
    """
    from intentkit.config import DataConfig, build, load_preset
    from intentkit.data.prepare import prepare

    section = load_preset(preset).get("data") if preset else None
    cfg = build(
        DataConfig,
        section,
        text_column=text_column,
        label_column=label_column,
        test_size=test_size,
        val_size=val_size,
        seed=seed,
        min_per_label=min_per_label,
        include_oos=include_oos or None,
        resplit=resplit or None,
    )
    with _console(stderr=True).status(f"Preparing {source} ..."):
        stats = prepare(source, out, config=cfg, force=force)
    _print_prepare(stats, source, out)


def _print_prepare(stats: dict[str, Any], source: str, out: Path) -> None:
    from rich.table import Table

    console = _console()
    console.print(f"prepared {source} -> {out} ({stats['split']} split)")
    table = Table()
    for col in ("split", "rows", "labels"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, rows in stats["rows"].items():
        table.add_row(split, f"{rows:,}", str(len(stats["label_counts"][split])))
    console.print(table)
    dropped = ", ".join(f"{n:,} {r.replace('_', ' ')}" for r, n in stats["dropped"].items() if n)
    console.print(f"dropped: {dropped or 'nothing'}")
    for note in stats.get("notes", []):
        console.print(f"note: {note}")
    console.print(f"fingerprint {stats['fingerprint'][:16]}; details in {out / 'stats.json'}")


@data_app.command("inspect")
def inspect_cmd(
    path: Annotated[Path, typer.Argument(help="A folder written by `data prepare`.")],
    model: Annotated[
        str | None,
        typer.Option(help="Tokenizer to measure with (default: modernbert-base, minilm offline)."),
    ] = None,
    top_n: Annotated[int, typer.Option(help="Labels shown in table and plot (0 = all).")] = 20,
) -> None:
    """Label balance and token lengths of a prepared dataset, and a max_length recommendation.

    Writes label_distribution.png, token_lengths.png and inspect.json (read by training) into PATH.
    """
    from rich.table import Table

    from intentkit.data.inspect import inspect

    err = _console(stderr=True)

    def warn(message: str) -> None:
        err.print(f"[yellow]warning:[/] {message}", soft_wrap=True, markup=True)

    with err.status(f"Inspecting {path} ..."):
        result = inspect(path, model=model, top_n=top_n, on_warning=warn)
    console = _console()
    counts = result["label_counts"]
    splits = list(counts)
    totals = {s: sum(counts[s].values()) for s in splits}
    order = sorted(counts["train"], key=lambda k: (-counts["train"][k], k))
    shown = order if top_n <= 0 else order[:top_n]
    table = Table(title=f"{path}: {result['num_labels']} labels", title_justify="left")
    table.add_column("label")
    for s in splits:
        table.add_column(s, justify="right")
        table.add_column("%", justify="right")
    for label in shown:
        cells = []
        for s in splits:
            n = counts[s].get(label, 0)
            cells += [f"{n:,}", f"{100 * n / (totals[s] or 1):.1f}"]
        table.add_row(label, *cells)
    if len(shown) < len(order):
        table.caption = f"{len(shown)} of {len(order)} labels by train count (--top-n 0: all)"
    console.print(table)
    console.print(f"imbalance ratio (largest / smallest train label): {result['imbalance_ratio']}")
    lengths = Table(title=f"token lengths ({result['model']} tokenizer)", title_justify="left")
    for col in ("split", "p50", "p90", "p99", "max"):
        lengths.add_column(col, justify="left" if col == "split" else "right")
    for s, p in result["token_lengths"].items():
        lengths.add_row(s, *(str(p[k]) for k in ("p50", "p90", "p99", "max")))
    console.print(lengths)
    console.print(
        f"recommended --max-length {result['recommended_max_length']} (p99 rounded up to a "
        f"multiple of 8; model limit {result['model_max_length']}; "
        f"{100 * result['truncated_share']:.2f}% of texts longer)"
    )
    console.print(f"wrote {', '.join(result['plots'])} and inspect.json into {path}")


@data_app.command("add")
def add_cmd(
    data_dir: Annotated[Path, typer.Argument(help="A folder written by `data prepare`/`add`.")],
    labels: Annotated[
        Path, typer.Argument(help="Labels JSONL from `intentkit review` (text, label per line).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder to write.")],
    reviewed_test_size: Annotated[
        float, typer.Option(help="Share of new rows per label held out as reviewed_test.")
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the reviewed_test slice.")] = 42,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out.")] = False,
) -> None:
    """Write a new version of DATA_DIR with the reviewed rows of LABELS added (DATA_DIR is kept).

    Rows get data prepare's cleaning; texts already in DATA_DIR are dropped; test and val stay
    frozen; a seeded share of the new rows per label becomes reviewed_test.parquet, the rest
    joins train. New labels are allowed. stats.json records the parent and what was added.
    """
    from intentkit.data.add import add

    stats = add(
        data_dir, labels, out, reviewed_test_size=reviewed_test_size, seed=seed, force=force
    )
    added = stats["added"]
    new = ", ".join(added["new_labels"]) or "none"
    dropped = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in added["dropped"].items() if n)
    _console().print(
        f"added {added['rows']['train']} train + {added['rows']['reviewed_test']} reviewed_test "
        f"rows -> {out} (new labels: {new}; dropped: {dropped or 'nothing'})"
    )


@data_app.command("sample")
def sample_cmd(
    data_dir: Annotated[Path, typer.Argument(help="A folder written by `data prepare`/`add`.")],
    per_label: Annotated[
        int, typer.Option("--per-label", "-k", help="Train (and val) rows per label.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder to write.")],
    seed: Annotated[int, typer.Option(help="Seed of the draw: same seed, same rows.")] = 42,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out.")] = False,
) -> None:
    """Write a reproducible few-shot version of DATA_DIR: K train rows per label, test unchanged.

    Val is sampled the same way (min(K, available) per label) from DATA_DIR's val split, or,
    when it has none, from the train rows not chosen. A label with fewer than K train rows keeps
    them all and is reported. stats.json records the parent, K and the seed.
    """
    from intentkit.data.sample import sample

    stats = sample(data_dir, out, per_label=per_label, seed=seed, force=force)
    info, rows = stats["sample"], stats["rows"]
    console = _console()
    console.print(
        f"sampled {per_label} per label (seed {seed}) -> {out}: "
        + ", ".join(f"{n:,} {s}" for s, n in rows.items())
    )
    if info["short_labels"]:
        short = ", ".join(f"{k} ({v})" for k, v in info["short_labels"].items())
        console.print(
            f"note: {len(info['short_labels'])} label(s) had fewer than {per_label}: {short}"
        )
    if info["labels_without_val"]:
        console.print(f"note: no val rows for {', '.join(info['labels_without_val'])}")
