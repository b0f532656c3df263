"""``report.html``: one evaluation as a single self-contained page.

Layout and behaviour live in package files (``templates/``): the HTML shell, one stylesheet and
the JS, all inlined. Python fills the shell with server-rendered sections (tables and SVG, so the
page reads even with scripts off) and one JSON blob that the JS reads for the interactive parts
(sorting, filtering, confusion-cell lists, error search).

Templating is ``{{name}}`` substitution, not Jinja2: Jinja2 is only here as a dependency of
torch (not of intentkit), and a dozen slots of pre-escaped HTML need no loops or filters.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from intentkit.evaluation.report import charts
from intentkit.evaluation.report.confusion import (
    MAX_LABELS,
    confusion_counts,
    confusion_svg,
    most_confused_idx,
)
from intentkit.evaluation.report.evaldir import Evaluation, load_evaluation
from intentkit.evaluation.report.svg import esc, fmt
from intentkit.inference.decision import reject_label_of

REPORT_HTML = "report.html"
_SLOT = re.compile(r"\{\{(\w+)\}\}")

#: Headline metrics: (report.json key, card title). Tests read them back from the DOM.
HEADLINE = (
    ("accuracy", "accuracy"),
    ("macro_f1", "macro F1"),
    ("weighted_f1", "weighted F1"),
    ("in_scope_accuracy", "in-scope accuracy"),
    ("oos_recall", "OOS recall"),
    ("oos_precision", "OOS precision"),
    ("ece_before", "ECE before T"),
    ("ece_after", "ECE after T"),
    ("threshold", "reject threshold"),
)


@cache
def template(name: str) -> str:
    """A file of ``intentkit/report/templates`` (shipped as package data)."""
    return (
        resources.files("intentkit.evaluation.report")
        .joinpath("templates", name)
        .read_text("utf-8")
    )


def render(name: str, **slots: str) -> str:
    """Fill ``{{slot}}`` placeholders of template ``name``; a slot left unfilled is a bug."""
    missing = set(_SLOT.findall(template(name))) - set(slots)
    if missing:
        raise KeyError(f"template {name}: no value for {sorted(missing)}")
    return _SLOT.sub(lambda m: slots[m.group(1)], template(name))


def json_script(obj: Any) -> str:
    """JSON safe inside ``<script type=application/json>``: no ``</script>`` can end it early."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def cards(items: list[tuple[str, str, float | None, str]]) -> str:
    """Metric cards: (key, title, value, extra HTML under the value)."""
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card" data-metric="{esc(k)}" data-value="{"" if v is None else repr(v)}">'
            f'<div class="k">{esc(title)}</div><div class="v">{fmt(v)}</div>{extra}</div>'
            for k, title, v, extra in items
        )
        + "</div>"
    )


def kv_table(rows: list[tuple[str, Any]]) -> str:
    """A two-column key/value table (values escaped; None rows dropped)."""
    body = "".join(
        f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows if v not in (None, "")
    )
    return f'<table class="kv">{body}</table>'


def rejection_cards(r: dict[str, Any]) -> list[tuple[str, str, float | None, str]]:
    """Beside accuracy, what rejection cost: accuracy with no rejection, in-scope rows rejected.

    Empty for a report written before ``evaluate`` recorded them.
    """
    if "in_scope_rejected" not in r:
        return []
    share, n_in = r.get("in_scope_rejected_share"), r.get("n_in_scope")
    rows = f'<div class="d">{r["in_scope_rejected"]} of {n_in} rows</div>'
    return [
        ("accuracy_no_rejection", "accuracy, no rejection", r.get("accuracy_no_rejection"), ""),
        ("in_scope_rejected_share", "in-scope rejected", share, rows),
    ]


def _rule(cal: dict[str, Any], r: dict[str, Any]) -> str:
    """What the served rejection reads: the feature-space distance or calibrated confidence."""
    scorer = cal.get("oos_scorer") or "softmax"
    if scorer == "softmax":
        return f"threshold {fmt(r.get('threshold'))} on calibrated confidence"
    limit = cal.get("oos_threshold")
    bound = "none met the target" if limit is None else f"rejected above {fmt(-limit)}"
    return f"{scorer} distance in feature space ({bound})"


def _summary(ev: Evaluation) -> str:
    r, meta = ev.report, ev.meta
    items = [(k, t, r.get(k), "") for k, t in HEADLINE]
    items[1:1] = rejection_cards(r)
    training = meta.get("training") or {}
    cfg = meta.get("train_config") or {}
    data = meta.get("data") or {}
    cal = meta.get("calibration") or {}
    runtime = training.get("runtime_s")
    versions = meta.get("versions") or {}
    rows = [
        ("model", f"{ev.name} ({cfg.get('model') or cfg.get('model_resolved') or '?'})"),
        ("model folder", str(ev.model_dir) if ev.model_dir else "not found (moved?)"),
        ("data", r.get("data")),
        ("data fingerprint", data.get("fingerprint") or (ev.inspect or {}).get("fingerprint")),
        (
            "split",
            f"{r.get('split')}: {r.get('n')} rows, {r.get('n_in_scope')} in scope, "
            f"{r.get('n_oos')} out of scope, {r.get('n_rejected')} rejected",
        ),
        (
            "rejection",
            _rule(cal, r)
            + f", temperature {fmt(r.get('temperature'))}, answer {r.get('reject_label')!r}"
            + ("" if r.get("reject", True) else " (evaluated with --no-reject)"),
        ),
        ("scorer choice", (cal.get("oos_selection") or {}).get("rule")),
        (
            "threshold target",
            f"validation in-scope accuracy ≥ {fmt(cal.get('target_in_scope_accuracy'))}"
            if cal
            else None,
        ),
        (
            "training",
            f"{runtime:.0f} s, {training.get('epochs_completed', 0):g} epochs, "
            f"{training.get('global_step')} steps on {training.get('device')} "
            f"({training.get('precision')})"
            if runtime is not None
            else None,
        ),
        (
            "recipe",
            ", ".join(
                f"{k} {cfg[k]}"
                for k in ("epochs", "batch_size", "lr", "max_length", "metric")
                if cfg.get(k) is not None
            ),
        ),
        ("library versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
        ("evaluated", r.get("created")),
    ]
    return cards(items) + "<h3>Details</h3>" + kv_table(rows)


def bar_cell(value: float, text: str, *, bad: bool = False) -> str:
    """A table cell with a bar for ``value`` in [0, 1] beside (never under) its number ``text``.

    The bar is its own element in a track left of the number, so a bar at 1.0 ends where the
    number starts instead of running under it.
    """
    width = f"{100 * min(max(value, 0.0), 1.0):.2f}%"
    return (
        f'<td class="num{" bad" if bad else ""}" data-v="{value!r}"><div class="barcell">'
        f'<span class="track"><i style="width:{width}"></i></span>'
        f'<span class="n">{esc(text)}</span></div></td>'
    )


def _classes(ev: Evaluation) -> str:
    pred, reject_label = ev.predictions, reject_label_of(ev.report)
    rejected = pred.groupby("true_class")["rejected"].mean().to_dict()
    rows = sorted(ev.report["per_class"].items(), key=lambda kv: (kv[1]["f1"], -kv[1]["support"]))
    body = []
    for name, s in rows:
        rej = float(rejected.get(name, 0.0))
        tag = " <span class=pill>out of scope</span>" if name == reject_label else ""
        cells = [f'<td data-v="{esc(name)}">{esc(name)}{tag}</td>']
        for key in ("precision", "recall", "f1"):
            cells.append(bar_cell(s[key], f"{s[key]:.3f}"))
        cells.append(f'<td class=num data-v="{s["support"]}">{s["support"]}</td>')
        cells.append(bar_cell(rej, f"{rej:.1%}", bad=True))
        body.append(f'<tr data-class="{esc(name)}">{"".join(cells)}</tr>')
    head = '<th data-sort="str">class</th>' + "".join(
        f'<th class=num data-sort="num">{h}</th>'
        for h in ("precision", "recall", "F1", "support", "rejected")
    )
    rows_html = "".join(body)
    return (
        f'<table id="class-table"><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>'
    )


def _confusion(classes: list[str], cm: Any) -> str:
    n = len(classes)
    pick = (
        '<div class="cm-side"><h3 id="cm-pick-title">Click a cell to list its sentences.</h3>'
        '<div class="scroll"><table id="cm-pick"><thead><tr><th>text</th><th>true</th>'
        '<th>answered</th><th class="num">confidence</th><th>top-3</th></tr></thead>'
        "<tbody></tbody></table></div></div>"
    )
    if n <= MAX_LABELS:
        only = confusion_svg(classes, cm, range(n), css_id="cm-top")
        return f'<div class="cm-wrap"><div>{only}</div>{pick}</div>'
    top = confusion_svg(classes, cm, most_confused_idx(cm), css_id="cm-top")
    full = confusion_svg(classes, cm, range(n), css_id="cm-all").replace(
        "<svg ", '<svg style="display:none" ', 1
    )
    label_top = f"Showing the {MAX_LABELS} most-confused of {n} classes: show all"
    toggle = (
        f'<button id="cm-toggle" data-all="{esc(label_top)}" data-top="Showing all {n} '
        f'classes: show the {MAX_LABELS} most confused">{esc(label_top)}</button>'
    )
    return (
        f'<div class="tools">{toggle}</div><div class="cm-wrap"><div>{top}{full}</div>{pick}</div>'
    )


def _threshold(ev: Evaluation) -> str:
    curves = charts.threshold_curves(ev.predictions, ev.report, ev.meta)
    parts = [
        f'<div class="fig"><h3>Rejection threshold</h3>'
        f"{charts.threshold_svg(curves, ev.report.get('threshold'))}</div>"
    ]
    rel = charts.reliability(ev.predictions, ev.meta)
    if rel is not None:
        parts.append(
            f'<div class="fig"><h3>Reliability (n={rel["n"]})</h3>'
            f"{charts.reliability_svg(rel)}</div>"
        )
    return "".join(parts)


def _data(ev: Evaluation) -> str:
    counts = (ev.inspect or {}).get("label_counts") or (ev.meta.get("data") or {}).get(
        "label_counts"
    )
    parts = []
    if counts:
        parts.append("<h3>Label distribution</h3>" + charts.label_distribution_svg(counts))
    if ev.inspect:
        parts.append("<h3>Token lengths</h3>" + charts.token_lengths_html(ev.inspect))
    else:
        parts.append(
            "<p class=muted>No inspect.json in the data folder: run "
            "<code>intentkit data inspect DATA</code> for token lengths.</p>"
        )
    history = (ev.meta.get("training") or {}).get("log_history")
    if history:
        parts.append(
            f'<h3>Training curves</h3><div class="figs">{charts.training_curves_svg(history)}</div>'
        )
    else:
        parts.append(
            "<p class=muted>No training log in intentkit.json (trained before it was recorded).</p>"
        )
    return "".join(parts)


def sentence_items(pred: Any) -> list[dict[str, Any]]:
    """The rows the page lists (misclassified or rejected), most confident first."""
    rows = pred[(~pred["correct"]) | pred["rejected"]].sort_values("confidence", ascending=False)
    return [
        {
            "t": t,
            "y": y,
            "p": p,
            "c": round(float(c), 4),
            "r": bool(r),
            "k": [[lab, round(float(s), 4)] for lab, s in zip(ls, ss, strict=True)],
        }
        for t, y, p, c, r, ls, ss in zip(
            rows["text"],
            rows["true_class"],
            rows["pred_class"],
            rows["confidence"],
            rows["rejected"],
            rows["top3_labels"],
            rows["top3_scores"],
            strict=True,
        )
    ]


def render_report(ev: Evaluation) -> str:
    """The full ``report.html`` text for an evaluation."""
    pred, r = ev.predictions, ev.report
    classes, cm = confusion_counts(pred["true_class"].tolist(), pred["pred_class"].tolist())
    nz = cm.nonzero()
    blob = {
        "classes": classes,
        "cm": [[int(i), int(j), int(cm[i, j])] for i, j in zip(*nz, strict=True)],
        "cm_rows": cm.sum(axis=1).tolist(),
        "rows": sentence_items(pred),
    }
    title = f"{ev.name}: evaluation on {r.get('split', '?')}"
    subtitle = (
        f"accuracy {fmt(r.get('accuracy'))} · macro F1 {fmt(r.get('macro_f1'))} · "
        f"{r.get('n')} rows · {len(r['per_class'])} classes · {r.get('created', '')}"
    )
    return render(
        "report.html",
        title=esc(title),
        subtitle=esc(subtitle),
        css=template("base.css"),
        summary=_summary(ev),
        classes=_classes(ev),
        confusion=_confusion(classes, cm),
        threshold=_threshold(ev),
        data=_data(ev),
        footer=esc(f"intentkit report · {ev.eval_dir}"),
        data_json=json_script(blob),
        js=template("common.js") + template("report.js"),
    )


def write_report(source: str | Path | Evaluation, out: str | Path | None = None) -> Path:
    """Build ``report.html`` for an evaluation (``EVAL_DIR``, ``MODEL_DIR`` or loaded); return it.

    Args:
        source: an evaluation folder, a model folder with ``eval/``, or an :class:`Evaluation`.
        out: the HTML file to write (default ``EVAL_DIR/report.html``); written atomically.
    """
    from intentkit.fsutil import atomic_write_text

    ev = source if isinstance(source, Evaluation) else load_evaluation(source)
    path = Path(out) if out is not None else ev.eval_dir / REPORT_HTML
    atomic_write_text(path, render_report(ev))
    return path
