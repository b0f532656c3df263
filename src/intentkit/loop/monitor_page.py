"""``monitor.html``: the monitor summary as one offline page in the report's style.

The shell is ``evaluation/report/templates/monitor.html`` (same CSP-locked head and stylesheet
as ``report.html``); charts are the report's hand-built SVG
(:mod:`intentkit.evaluation.report.svg`), so the page needs no script and no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from intentkit.evaluation.report.page import cards, json_script, kv_table, render, template
from intentkit.evaluation.report.svg import PALETTE, Series, esc, fmt, line_chart

MONITOR_HTML = "monitor.html"
MONITOR_JSON = "monitor.json"


def _line(windows: list[dict[str, Any]], keys: list[tuple[str, str]], y_label: str) -> str:
    """One line per key over time: x is hours since the first window (gaps stay visible)."""
    import numpy as np

    t0 = np.datetime64(windows[0]["start"], "m") if windows else None
    xs = [float((np.datetime64(w["start"], "m") - t0) / np.timedelta64(1, "h")) for w in windows]
    series = [
        Series(name, xs, [w[key] for w in windows], PALETTE[i % len(PALETTE)], points=len(xs) < 30)
        for i, (key, name) in enumerate(keys)
        if any(w[key] is not None for w in windows)
    ]
    x_label = f"hours since {windows[0]['start']} UTC" if windows else "hours"
    return line_chart(series, x_label=x_label, y_label=y_label, label=y_label, width=540)


def _answers_table(labels: list[dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr data-label="{esc(r["label"])}"><td>{esc(r["label"])}</td>'
        f'<td class="num">{r["live"]:,}</td><td class="num">{fmt(r["live_share"])}</td>'
        f'<td class="num">{fmt(r["train_share"])}</td>'
        f'<td class="num">{fmt(r["js_term"], 4)}</td></tr>'
        for r in labels
    )
    head = (
        '<tr><th>label</th><th class="num">answers</th><th class="num">live share</th>'
        '<th class="num">training share</th><th class="num">JS term</th></tr>'
    )
    return f'<table id="answer-table"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def render_monitor(summary: dict[str, Any]) -> str:
    """The full ``monitor.html`` text for a :func:`intentkit.loop.monitor.monitor` summary."""
    windows, drift = summary["windows"], summary["drift"]
    names = {
        "answer_js": "answers JS",
        "confidence_js": "confidence JS",
        "oos_js": "OOS score JS",
        "rejection_increase": "rejection rise",
    }
    items = [("rejection_rate", "rejection rate", summary.get("rejection_rate"), "")]
    for key, d in drift.items():
        mark = "down" if d["drifted"] else "up"
        extra = f'<div class="d {mark}">limit {fmt(d["threshold"], 2)}</div>'
        items.append((key, names[key], d["value"], extra))
    bad = [names[k] for k, d in drift.items() if d["drifted"]]
    verdict = (
        f'<div class="verdict {"noise" if bad else "sig"}" id="verdict">'
        + (f"Drifted: {esc(', '.join(bad))}" if bad else "No drift past the thresholds")
        + "</div>"
    )
    read = summary["read"]
    span = f"{windows[0]['start']} … {windows[-1]['start']}" if windows else "no rows"
    return render(
        MONITOR_HTML,
        title=esc(Path(summary.get("model", "model")).name),
        subtitle=esc(
            f"{summary['rows']:,} texts · {len(windows)} windows of "
            f"{summary.get('window_minutes', 0)} min · {span} UTC"
        ),
        css=template("base.css"),
        verdict=verdict,
        # The report's cards() shows 3 decimals; the text count goes first as a whole number.
        cards=cards(items).replace(
            '<div class="cards">',
            '<div class="cards"><div class="card" data-metric="rows">'
            f'<div class="k">texts</div><div class="v">{summary["rows"]:,}</div></div>',
            1,
        ),
        method=esc(
            f"{summary.get('distance', '')}; confidence and out-of-scope score are compared "
            f"with the {summary.get('reference', 'first window')}, answers with training."
        ),
        traffic=_line(windows, [("texts", "texts")], "texts per window"),
        rejection=_line(windows, [("rejection_rate", "rejection rate")], "rejection rate"),
        confidence=_line(windows, [("mean_confidence", "mean confidence")], "mean confidence"),
        distances=_line(
            windows,
            [("answer_js", "answers"), ("confidence_js", "confidence"), ("oos_js", "OOS score")],
            "Jensen-Shannon divergence",
        ),
        answers=_answers_table(summary.get("labels", [])),
        read=kv_table(
            [
                ("files", read["files"]),
                ("lines", read["lines"]),
                ("lines skipped (corrupt or cut off)", read["skipped"]),
                *((f"skipped {i + 1}", e) for i, e in enumerate(read["examples"])),
            ]
        ),
        footer=esc(summary.get("model", "")),
        data_json=json_script(summary),
    )


def write_monitor(summary: dict[str, Any], out: str | Path) -> Path:
    """Write ``monitor.json`` and ``monitor.html`` into folder ``out`` (atomically); return it."""
    from intentkit.fsutil import atomic_write_json, atomic_write_text

    out = Path(out)
    atomic_write_json(out / MONITOR_JSON, summary)
    atomic_write_text(out / MONITOR_HTML, render_monitor(summary))
    return out
