"""``intentkit quickstart``: the whole job offline, as the reference notebook did it on SageMaker.

prepare the bundled ``clinc150-travel`` set -> fine-tune briefly on CPU -> evaluate on test
(``report.html``) -> deploy a local endpoint -> the reference's three predictions -> delete the
endpoint; then a summary table ending with the report's path. The endpoint is always deleted,
even when a step after deploy fails.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

#: The reference notebook's three test prompts (and what its deployed model answered).
DEMO_QUERIES = (
    "what time is my flight ?",
    "where is the gate of my flight ?",
    "where can i store my bags ?",
)
DEMO_DATASET = "clinc150-travel"
FALLBACK_MODEL = "minilm"


def choose_model(model: str | None, console: Any) -> str:
    """``model`` if given; else ModernBERT-base when loadable, else MiniLM with a loud warning."""
    from rich.panel import Panel

    from intentkit.errors import IntentkitError
    from intentkit.modeling import DEFAULT_MODEL, load_config

    if model:
        return model
    try:
        load_config(DEFAULT_MODEL)
        return DEFAULT_MODEL
    except (IntentkitError, OSError, ValueError) as exc:
        console.print(
            Panel(
                f"{DEFAULT_MODEL} cannot be loaded here ({exc}).\n"
                f"Using the bundled offline encoder `{FALLBACK_MODEL}` (all-MiniLM-L6-v2) instead; "
                f"results are for MiniLM, not ModernBERT. Pass --model to choose.",
                title="ModernBERT-base unavailable",
                border_style="yellow",
                style="yellow",
            )
        )
        return FALLBACK_MODEL


def run_quickstart(
    out: str | Path,
    *,
    model: str | None = None,
    force: bool = False,
    epochs: float = 2.0,
    max_length: int = 32,
    port: int = 0,
    state_dir: str | Path | None = None,
    console: Any | None = None,
) -> dict[str, Any]:
    """Run the demo into ``out`` (data/, model/, model/eval/); return a summary dict.

    ``port`` 0 picks a free port on 127.0.0.1 for the temporary endpoint.
    """
    from rich.console import Console

    from intentkit.config import DataConfig
    from intentkit.data.prepare import prepare
    from intentkit.endpoints.local import delete_endpoint, start_detached
    from intentkit.endpoints.registry import Registry, default_state_dir
    from intentkit.evaluation.evaluate import evaluate
    from intentkit.fsutil import check_output_dir
    from intentkit.training.train import train

    console = console or Console(stderr=True)
    out = check_output_dir(out, force=force)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    summary: dict[str, Any] = {"out": str(out), "timings": timings}

    def step(name: str) -> Any:
        console.rule(f"[bold]{name}")
        return time.perf_counter()

    chosen = choose_model(model, console)
    summary["model"] = chosen

    t = step(f"1/5 prepare {DEMO_DATASET}")
    stats = prepare(DEMO_DATASET, out / "data", config=DataConfig(), force=True)
    summary["rows"] = stats["rows"]
    summary["num_labels"] = stats["num_labels"]
    timings["prepare"] = time.perf_counter() - t

    t = step(f"2/5 train {chosen} ({epochs:g} epochs, max length {max_length}, preset cpu-fast)")
    model_dir = train(
        out / "data",
        out / "model",
        preset="cpu-fast",
        force=True,
        model=chosen,
        epochs=epochs,
        max_length=max_length,
    )
    timings["train"] = time.perf_counter() - t

    t = step("3/5 evaluate on test")
    report = evaluate(model_dir, out / "data", split="test")
    summary["accuracy"] = report["accuracy"]
    summary["macro_f1"] = report["macro_f1"]
    summary["report"] = str(model_dir / "eval" / "report.html")
    timings["evaluate"] = time.perf_counter() - t

    t = step("4/5 deploy a local endpoint")
    registry = Registry(state_dir or default_state_dir())
    if port == 0:
        from intentkit.serve.server import free_port

        port = free_port()
    name = f"quickstart-{port}"
    rec = start_detached(registry, name, model_dir, port=port)
    summary["endpoint"] = rec["url"]
    timings["deploy"] = time.perf_counter() - t
    try:
        t = step("5/5 predict through the endpoint")
        # The playground page (GET /) lives only while the endpoint does: say so while it is up.
        console.print(
            f"playground: {rec['url']}/ (open it in a browser while this step runs)",
            soft_wrap=True,
        )
        import httpx

        r = httpx.post(f"{rec['url']}/invocations", json={"text": list(DEMO_QUERIES)}, timeout=60)
        r.raise_for_status()
        summary["backend"] = httpx.get(f"{rec['url']}/info", timeout=10).json().get("backend")
        summary["predictions"] = [
            {"text": q, **a} for q, a in zip(DEMO_QUERIES, r.json(), strict=True)
        ]
        timings["predict"] = time.perf_counter() - t
    finally:
        t = time.perf_counter()
        summary["delete"] = delete_endpoint(registry, name, timeout=30)
        timings["delete"] = time.perf_counter() - t
    summary["model_dir"] = str(model_dir)
    return summary


def render_summary(summary: dict[str, Any], console: Any) -> None:
    """Print the end-of-run rich table."""
    from rich.table import Table

    table = Table(title="intentkit quickstart", show_header=False, title_style="bold")
    table.add_column(style="bold")
    table.add_column()
    rows = summary.get("rows", {})
    table.add_row("dataset", f"{DEMO_DATASET}: " + ", ".join(f"{k} {v}" for k, v in rows.items()))
    table.add_row("model", f"{summary['model']} -> {summary.get('model_dir', '')}")
    table.add_row("test accuracy", f"{summary.get('accuracy', float('nan')):.3f}")
    table.add_row("test macro-F1", f"{summary.get('macro_f1', float('nan')):.3f}")
    served = f"served on {summary['backend']}; " if summary.get("backend") else ""
    endpoint = f"{summary.get('endpoint', '')} ({served}{summary.get('delete', '')})"
    table.add_row("endpoint", endpoint)
    for p in summary.get("predictions", []):
        table.add_row(f"'{p['text']}'", f"{p['predicted_class']} ({p['confidence']:.3f})")
    if summary.get("report"):
        table.add_row("report", f"{summary['report']} (open in a browser; works offline)")
    timings = summary.get("timings", {})
    table.add_row(
        "time",
        ", ".join(f"{k} {v:.0f}s" for k, v in timings.items())
        + f" (total {sum(timings.values()):.0f}s)",
    )
    console.print(table)
    if summary.get("report"):
        # Last line on purpose: the one thing to open next.
        console.print(f"report: {summary['report']}", soft_wrap=True)  # a path must not wrap
