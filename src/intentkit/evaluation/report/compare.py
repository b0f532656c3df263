"""``intentkit compare``: two evaluations of the same rows side by side, with a McNemar test.

The pairing is by row: both evaluations must have scored the same texts with the same labels
(the same prepared split), else the comparison is refused. McNemar's test asks whether the two
models' error rates differ beyond chance using only the discordant rows (one right, the other
wrong): b = A right & B wrong, c = A wrong & B right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from intentkit.errors import DataError
from intentkit.evaluation.report.evaldir import Evaluation, load_evaluation
from intentkit.evaluation.report.page import HEADLINE, json_script, render, template
from intentkit.evaluation.report.svg import esc, fmt

#: Below this many discordant rows the exact binomial test is used, else the chi-square
#: approximation (with continuity correction). 25 is the usual rule (e.g. statsmodels' docs):
#: the binomial is then close enough to normal for the approximation to hold.
EXACT_BELOW = 25
LOWER_IS_BETTER = {"ece_before", "ece_after"}


def mcnemar(b: int, c: int, *, exact_below: int = EXACT_BELOW) -> dict[str, Any]:
    """McNemar's test on discordant counts ``b`` and ``c``; two-sided p-value.

    * exact (``b + c < exact_below``): under H0 the discordant rows split like fair coin flips,
      so p = min(1, 2 * P(X <= min(b, c))) with X ~ Binomial(b + c, 1/2);
    * otherwise chi-square with continuity correction: (|b - c| - 1)^2 / (b + c) on 1 degree of
      freedom (Edwards 1948).

    Returns:
        ``{"b", "c", "n_discordant", "method", "statistic", "p_value"}``; with no discordant
        rows p = 1 (the models never disagree on correctness).
    """
    from scipy.stats import binom, chi2

    b, c = int(b), int(c)
    n = b + c
    if n == 0:
        return {
            "b": b,
            "c": c,
            "n_discordant": 0,
            "method": "exact binomial",
            "statistic": 0.0,
            "p_value": 1.0,
        }
    if n < exact_below:
        p = min(1.0, 2.0 * float(binom.cdf(min(b, c), n, 0.5)))
        return {
            "b": b,
            "c": c,
            "n_discordant": n,
            "method": "exact binomial",
            "statistic": float(min(b, c)),
            "p_value": p,
        }
    stat = (abs(b - c) - 1) ** 2 / n
    return {
        "b": b,
        "c": c,
        "n_discordant": n,
        "method": "chi-square with continuity correction",
        "statistic": float(stat),
        "p_value": float(chi2.sf(stat, 1)),
    }


def paired(a: Evaluation, b: Evaluation) -> tuple[Any, Any]:
    """Both prediction frames in the same row order; a one-line error unless the rows match."""
    pa, pb = a.predictions, b.predictions
    key_a = list(zip(pa["text"], pa["label"], strict=True))
    key_b = list(zip(pb["text"], pb["label"], strict=True))
    if key_a != key_b:
        if len(key_a) == len(key_b) and sorted(key_a) == sorted(key_b):
            # Same rows in another order (re-prepared data): align B on A's order.
            pos = {k: i for i, k in enumerate(key_b)}
            pb = pb.iloc[[pos[k] for k in key_a]].reset_index(drop=True)
        else:
            same = len(set(key_a) & set(key_b))
            raise DataError(
                f"EVAL_A ({len(key_a)} rows of {a.report.get('data')}, "
                f"{a.report.get('split')}) and EVAL_B ({len(key_b)} rows of "
                f"{b.report.get('data')}, {b.report.get('split')}) did not score the same rows "
                f"({same} in common); evaluate both models with the same --data and --split"
            )
    return pa.reset_index(drop=True), pb.reset_index(drop=True)


def _items(frame_a: Any, frame_b: Any, mask: Any) -> list[dict[str, Any]]:
    rows = []
    for i in mask.to_numpy().nonzero()[0]:
        ra, rb = frame_a.iloc[i], frame_b.iloc[i]
        rows.append(
            {
                "t": ra["text"],
                "y": ra["true_class"],
                "a": ra["pred_class"],
                "ca": round(float(ra["confidence"]), 4),
                "b": rb["pred_class"],
                "cb": round(float(rb["confidence"]), 4),
            }
        )
    return rows


def compare_evaluations(a: Evaluation, b: Evaluation) -> dict[str, Any]:
    """What ``compare.json`` holds: metrics and deltas (B - A), per-class F1, McNemar, rows."""
    pa, pb = paired(a, b)
    a_right, b_right = pa["correct"], pb["correct"]
    test = mcnemar(int((a_right & ~b_right).sum()), int((~a_right & b_right).sum()))
    metrics = {}
    for key, _ in HEADLINE:
        va, vb = a.report.get(key), b.report.get(key)
        delta = vb - va if isinstance(va, int | float) and isinstance(vb, int | float) else None
        metrics[key] = {"a": va, "b": vb, "delta": delta}
    classes = sorted(set(a.report["per_class"]) | set(b.report["per_class"]))
    per_class = []
    for name in classes:
        fa = a.report["per_class"].get(name, {}).get("f1")
        fb = b.report["per_class"].get(name, {}).get("f1")
        support = (a.report["per_class"].get(name) or b.report["per_class"].get(name))["support"]
        delta = fb - fa if fa is not None and fb is not None else None
        per_class.append(
            {"class": name, "f1_a": fa, "f1_b": fb, "delta": delta, "support": support}
        )
    per_class.sort(key=lambda r: (r["delta"] if r["delta"] is not None else 0.0, r["class"]))
    name_a, name_b = a.name, b.name
    if name_a == name_b:  # one model evaluated twice (e.g. with and without --no-reject)
        name_a = f"{a.name} ({a.eval_dir.parent.name}/{a.eval_dir.name})"
        name_b = f"{b.name} ({b.eval_dir.parent.name}/{b.eval_dir.name})"
    return {
        "a": {"name": name_a, "eval_dir": str(a.eval_dir), "model_dir": str(a.model_dir)},
        "b": {"name": name_b, "eval_dir": str(b.eval_dir), "model_dir": str(b.model_dir)},
        "n": len(pa),
        "split": a.report.get("split"),
        "data": a.report.get("data"),
        "metrics": metrics,
        "mcnemar": test,
        "per_class_f1": per_class,
        "a_right_b_wrong": _items(pa, pb, a_right & ~b_right),
        "b_right_a_wrong": _items(pa, pb, ~a_right & b_right),
    }


def _delta(key: str, delta: float | None) -> str:
    if delta is None:
        return '<div class="d">—</div>'
    better = delta < 0 if key in LOWER_IS_BETTER else delta > 0
    cls = "" if abs(delta) < 5e-4 else ("up" if better else "down")
    return f'<div class="d {cls}">B − A {delta:+.3f}</div>'


def render_compare(result: dict[str, Any]) -> str:
    """The ``compare.html`` text for :func:`compare_evaluations`' result."""
    a, b, test = result["a"]["name"], result["b"]["name"], result["mcnemar"]
    rows = []
    for key, title in HEADLINE:
        m = result["metrics"][key]
        rows.append(
            f'<tr data-metric="{key}"><td>{esc(title)}</td><td class=num>{fmt(m["a"])}</td>'
            f"<td class=num>{fmt(m['b'])}</td><td class=num>{_delta(key, m['delta'])}</td></tr>"
        )
    headline = (
        f'<table class="compact" id="metrics"><tr><th>metric</th><th class=num>A: {esc(a)}'
        f"</th><th class=num>B: {esc(b)}</th><th class=num>difference</th></tr>"
        f"{''.join(rows)}</table>"
    )
    p = test["p_value"]
    significant = p < 0.05
    verdict = (
        f'<div class="verdict {"sig" if significant else "noise"}" id="verdict">'
        f"{test['b']} {'row' if test['b'] == 1 else 'rows'} only A gets right, {test['c']} "
        f"only B gets right: McNemar p = "
        f'<b id="p-value" data-value="{p!r}">{p:.4g}</b> ({esc(test["method"])}). '
        + (
            "The accuracy difference is unlikely to be noise (p &lt; 0.05)."
            if significant
            else "The difference could well be noise (p ≥ 0.05)."
        )
        + "</div>"
        f'<p class="muted">Exact binomial test when fewer than 25 rows are discordant, else '
        f"chi-square with continuity correction; only rows where exactly one model is right "
        f"count. {result['n']} paired rows of {esc(result['data'])} ({esc(result['split'])}).</p>"
    )
    body = []
    for r in result["per_class_f1"]:
        d = r["delta"]
        dv = 0.0 if d is None else d
        cls = "up" if dv > 5e-4 else "down" if dv < -5e-4 else ""
        body.append(
            f'<tr data-class="{esc(r["class"])}">'
            f'<td data-v="{esc(r["class"])}">{esc(r["class"])}</td>'
            f'<td class=num data-v="{r["f1_a"] or 0}">{fmt(r["f1_a"])}</td>'
            f'<td class=num data-v="{r["f1_b"] or 0}">{fmt(r["f1_b"])}</td>'
            f'<td class="num {cls}" data-v="{dv}">{"—" if d is None else f"{d:+.3f}"}</td>'
            f'<td class=num data-v="{r["support"]}">{r["support"]}</td></tr>'
        )
    head = '<th data-sort="str">class</th>' + "".join(
        f'<th class=num data-sort="num">{h}</th>' for h in ("F1 A", "F1 B", "Δ F1", "support")
    )
    rows_html = "".join(body)
    classes = (
        f'<table id="class-table"><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>'
    )
    blob = {k: result[k] for k in ("a_right_b_wrong", "b_right_a_wrong")}
    return render(
        "compare.html",
        title=esc(f"{a} vs {b}"),
        subtitle=esc(f"A = {result['a']['eval_dir']} · B = {result['b']['eval_dir']}"),
        css=template("base.css"),
        headline=headline,
        verdict=verdict,
        classes=classes,
        name_a=esc(a),
        name_b=esc(b),
        data_json=json_script(blob),
        js=template("common.js") + template("compare.js"),
    )


def write_compare(
    eval_a: str | Path, eval_b: str | Path, out: str | Path | None = None
) -> tuple[Path, Path]:
    """Compare two evaluations; write ``compare.html`` and ``compare.json`` into ``out``.

    Args:
        eval_a: evaluation folder (or model folder with ``eval/``) of model A.
        eval_b: the same for model B; it must have scored the same rows.
        out: output folder (default: the current folder).

    Returns:
        The paths of ``compare.html`` and ``compare.json`` (written atomically).
    """
    from intentkit.fsutil import atomic_write_json, atomic_write_text

    a = load_evaluation(eval_a, flag="EVAL_A")
    b = load_evaluation(eval_b, flag="EVAL_B")
    result = compare_evaluations(a, b)
    folder = Path(out) if out is not None else Path.cwd()
    if folder.exists() and not folder.is_dir():
        raise DataError(f"--out {folder} is a file; pass a folder")
    html_path, json_path = folder / "compare.html", folder / "compare.json"
    atomic_write_json(json_path, result)
    atomic_write_text(html_path, render_compare(result))
    return html_path, json_path
