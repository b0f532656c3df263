"""report.html, `intentkit report` and `intentkit compare`, checked in a real Chromium.

The evaluation under test is the keyword model scored on a doctored copy of its test split
(every third label moved to another class, plus out-of-scope rows), so the page has errors,
rejections and off-diagonal confusion cells to show.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from intentkit.cli import main
from train_helpers import write_prepared

OOS_TEXTS = ["tell me a joke", "what is the meaning of life", "sing me a song"]


@pytest.fixture(scope="module")
def noisy_eval(kw_model: Path, kw_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An evaluation folder whose answers vary: mislabelled rows, out-of-scope rows."""
    from intentkit.evaluation.evaluate import evaluate

    train = pd.read_parquet(kw_data / "train.parquet")
    test = pd.read_parquet(kw_data / "test.parquet")
    labels = sorted(set(train["label"]))
    moved = test["label"].map(lambda x: labels[(labels.index(x) + 1) % len(labels)])
    test = test.assign(
        label=[
            m if i % 3 == 0 else x
            for i, (x, m) in enumerate(zip(test["label"], moved, strict=True))
        ]
    )
    test = pd.concat([test, pd.DataFrame({"text": OOS_TEXTS, "label": ["oos"] * 3})])
    root = tmp_path_factory.mktemp("noisy")
    data = write_prepared(root / "data", train, test, pd.read_parquet(kw_data / "val.parquet"))
    evaluate(kw_model, data, out=root / "eval")
    return root / "eval"


def _open(page, path: Path) -> None:
    page.page.goto(path.as_uri())
    page.page.wait_for_load_state("networkidle")


def _assert_clean(page, path: Path) -> None:
    assert page.console_errors == []
    assert page.requests == [path.as_uri()]  # the file itself, nothing else


def test_evaluate_writes_predictions_and_page(noisy_eval: Path) -> None:
    from intentkit.evaluation.report.predictions import COLUMNS

    report = json.loads((noisy_eval / "report.json").read_text())
    pred = pd.read_parquet(noisy_eval / "predictions.parquet")
    assert tuple(pred.columns) == COLUMNS
    assert len(pred) == report["n"] == 33
    assert pred["correct"].mean() == pytest.approx(report["accuracy"])
    assert int(pred["rejected"].sum()) == report["n_rejected"]
    assert (pred["true_class"] == "out_of_scope").sum() == 3  # "oos" folded into the reject label
    assert all(len(x) == 3 for x in pred["top3_labels"])
    assert (~pred["correct"]).sum() >= 5  # the doctored labels really produce errors
    html = (noisy_eval / "report.html").read_text()
    assert "<script src" not in html and "http://" not in html and "https://" not in html
    assert len(html) < 300_000


def test_report_page_offline_and_numbers_equal_report_json(page, noisy_eval: Path, tmp_path):
    from intentkit.evaluation.report.page import HEADLINE

    path = noisy_eval / "report.html"
    _open(page, path)
    page.page.screenshot(path=tmp_path / "report.png", full_page=True)
    _assert_clean(page, path)
    report = json.loads((noisy_eval / "report.json").read_text())
    for key, _ in HEADLINE:
        card = page.page.locator(f'.card[data-metric="{key}"]')
        shown = card.locator(".v").inner_text()
        if report.get(key) is None:
            assert shown == "—", key
        else:
            assert float(card.get_attribute("data-value")) == report[key], key
            assert shown == f"{report[key]:.3f}", key
    rows = page.page.locator("#class-table tbody tr")
    assert rows.count() == len(report["per_class"])
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td").all_inner_texts()
        s = report["per_class"][rows.nth(i).get_attribute("data-class")]
        assert cells[1:5] == [
            f"{s['precision']:.3f}",
            f"{s['recall']:.3f}",
            f"{s['f1']:.3f}",
            str(s["support"]),
        ]
    errors = page.page.locator("#err-table tbody tr").count()
    pred = pd.read_parquet(noisy_eval / "predictions.parquet")
    assert errors == int((~pred["correct"] | pred["rejected"]).sum())
    page.page.fill("#err-filter", OOS_TEXTS[0])
    assert page.page.locator("#err-table tbody tr").count() <= 1


def test_rejection_cost_cards_and_bars_beside_their_numbers(page, noisy_eval: Path, tmp_path):
    """The in-scope cost of rejection sits next to accuracy; no class-table bar runs under its
    number (#20 item 7), and each bar's length is its value."""
    report = json.loads((noisy_eval / "report.json").read_text())
    path = noisy_eval / "report.html"
    _open(page, path)
    page.page.set_viewport_size({"width": 900, "height": 900})  # narrow: bars and numbers close
    page.page.locator("#class-table").screenshot(path=tmp_path / "class-table.png")
    _assert_clean(page, path)
    # The session's keyword model was trained without oos rows: the page names its distance.
    details = page.page.locator("table.kv").inner_text()
    assert "mahalanobis distance in feature space (rejected above " in details
    assert "no out-of-scope validation rows: mahalanobis" in details
    metrics = page.page.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.metric)")
    assert metrics[:3] == ["accuracy", "accuracy_no_rejection", "in_scope_rejected_share"]
    card = page.page.locator('.card[data-metric="in_scope_rejected_share"]')
    assert card.locator(".v").inner_text() == f"{report['in_scope_rejected_share']:.3f}"
    rows = f"{report['in_scope_rejected']} of {report['n_in_scope']} rows"
    assert card.locator(".d").inner_text() == rows
    geometry = page.page.locator("#class-table .barcell").evaluate_all(
        """cells => cells.map(c => {
            const t = c.querySelector('.track').getBoundingClientRect();
            const f = c.querySelector('.track i').getBoundingClientRect();
            const n = c.querySelector('.n').getBoundingClientRect();
            return {v: +c.parentElement.dataset.v, track: t.width, fill: f.width,
                    fillRight: f.right, numLeft: n.left};
        })"""
    )
    assert len(geometry) == 4 * len(report["per_class"])
    for g in geometry:
        assert g["fillRight"] <= g["numLeft"], g
        assert g["track"] >= 30 and g["fill"] == pytest.approx(g["v"] * g["track"], abs=1), g
    assert any(g["v"] == 1.0 for g in geometry)  # a full bar is among them


def test_class_table_sorts_and_filters(page, noisy_eval: Path, tmp_path: Path) -> None:
    report = json.loads((noisy_eval / "report.json").read_text())
    _open(page, noisy_eval / "report.html")
    names = lambda: page.page.locator("#class-table tbody tr:not([hidden])").evaluate_all(  # noqa: E731
        "rows => rows.map(r => r.dataset.class)"
    )
    worst_first = sorted(
        report["per_class"],
        key=lambda c: (report["per_class"][c]["f1"], -report["per_class"][c]["support"]),
    )
    assert names() == worst_first
    page.page.click("#class-table th:has-text('support')")
    ascending = names()
    assert [report["per_class"][c]["support"] for c in ascending] == sorted(
        report["per_class"][c]["support"] for c in ascending
    )
    page.page.click("#class-table th:has-text('support')")
    assert [report["per_class"][c]["support"] for c in names()] == sorted(
        (report["per_class"][c]["support"] for c in ascending), reverse=True
    )
    page.page.click("#class-table th:has-text('class')")
    assert names() == sorted(report["per_class"])
    page.page.fill("#class-filter", "hot")
    assert names() == ["hotel"]
    assert page.page.inner_text("#class-count").startswith("1 of ")
    page.page.fill("#class-filter", "")
    assert len(names()) == len(report["per_class"])
    page.page.screenshot(path=tmp_path / "sorted.png")
    assert page.console_errors == []


def test_confusion_cell_click_lists_exactly_its_sentences(page, noisy_eval: Path, tmp_path):
    pred = pd.read_parquet(noisy_eval / "predictions.parquet")
    classes = sorted(set(pred["true_class"]) | set(pred["pred_class"]))
    wrong = pred[pred["true_class"] != pred["pred_class"]]
    pairs = wrong.groupby(["true_class", "pred_class"]).size().sort_values(ascending=False)
    assert len(pairs) >= 2
    _open(page, noisy_eval / "report.html")
    for t, p in list(pairs.index)[:3]:
        cell = f'#cm-top rect.cm-cell[data-i="{classes.index(t)}"][data-j="{classes.index(p)}"]'
        page.page.hover(cell)
        assert f"true {t} → answered {p}: {pairs[(t, p)]} of" in page.page.inner_text("#tip")
        page.page.click(cell)
        listed = page.page.locator("#cm-pick tbody tr td:first-child").all_inner_texts()
        expected = wrong[(wrong["true_class"] == t) & (wrong["pred_class"] == p)]["text"]
        assert sorted(listed) == sorted(expected)
        assert page.page.get_attribute("#cm-pick", "data-pair") == f"{t}→{p}"
    page.page.screenshot(path=tmp_path / "confusion.png", full_page=True)
    assert page.console_errors == []


def test_report_command_rebuilds_the_same_page(noisy_eval: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "model"
    shutil.copytree(noisy_eval, copy / "eval")
    (copy / "eval" / "report.html").unlink()
    assert main(["report", str(copy / "eval")]) == 0
    first = (copy / "eval" / "report.html").read_text()
    assert "report.html" in capsys.readouterr().out
    # MODEL_DIR form (eval/ inside) gives the same page.
    (copy / "eval" / "report.html").unlink()
    assert main(["report", str(copy)]) == 0
    assert (copy / "eval" / "report.html").read_text() == first
    # The same as evaluate wrote, but for the folder named in the footer.
    original = (noisy_eval / "report.html").read_text()
    assert first.replace(str(copy / "eval"), str(noisy_eval)) == original


def test_report_and_compare_one_line_errors(noisy_eval: Path, tmp_path: Path, capsys) -> None:
    cases = [
        (["report", str(tmp_path / "missing")], "no such folder"),
        (["report", str(tmp_path)], "run `intentkit evaluate"),
        (["compare", str(noisy_eval), str(tmp_path / "missing")], "EVAL_B"),
    ]
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(noisy_eval / "report.json", old / "report.json")
    cases.append((["report", str(old)], "predictions.parquet"))
    short = tmp_path / "short"
    shutil.copytree(noisy_eval, short)
    pred = pd.read_parquet(short / "predictions.parquet")
    pred.iloc[:-1].to_parquet(short / "predictions.parquet")
    cases.append((["compare", str(noisy_eval), str(short)], "same --data and --split"))
    for args, needle in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and needle in err, (args, err)
        assert "Traceback" not in err


def test_mcnemar_against_hand_computed_values() -> None:
    from intentkit.evaluation.report.compare import mcnemar

    # b=10, c=2: n=12 discordant (< 25) -> exact. P(X <= 2 | n=12, 1/2)
    # = (C(12,0) + C(12,1) + C(12,2)) / 2^12 = (1 + 12 + 66) / 4096 = 79/4096 = 0.019287...
    # two-sided p = 2 * 79/4096 = 158/4096 = 0.0385742...
    r = mcnemar(10, 2)
    assert r["method"] == "exact binomial"
    assert r["p_value"] == pytest.approx(158 / 4096, abs=1e-12)
    assert mcnemar(2, 10)["p_value"] == r["p_value"]  # symmetric
    # b=30, c=12: n=42 -> chi-square with continuity correction:
    # (|30 - 12| - 1)^2 / 42 = 17^2 / 42 = 289/42 = 6.88095...; 1 d.f. tail: p = erfc(sqrt(x/2))
    # = erfc(1.85485) = 0.008712 (tables: chi2(1) = 6.635 at p = 0.01, 7.879 at p = 0.005).
    r = mcnemar(30, 12)
    assert r["method"] == "chi-square with continuity correction"
    assert r["statistic"] == pytest.approx(289 / 42)
    assert r["p_value"] == pytest.approx(0.008712, abs=2e-6)
    assert mcnemar(0, 0)["p_value"] == 1.0
    assert mcnemar(5, 5)["p_value"] == 1.0  # 2 * P(X <= 5 | 10) = 2 * 638/1024 > 1 -> capped


def _doctored_copy(src: Path, dst: Path) -> tuple[int, int]:
    """A second 'model' on the same rows: flips 5 right rows to wrong and 2 wrong to right."""
    shutil.copytree(src, dst)
    pred = pd.read_parquet(dst / "predictions.parquet")
    right = pred.index[pred["correct"]][:5]
    wrong = pred.index[~pred["correct"]][:2]
    for i in right:
        other = "car" if pred.at[i, "true_class"] != "car" else "hotel"
        pred.loc[i, ["pred", "pred_class", "correct"]] = [other, other, False]
    for i in wrong:
        pred.loc[i, ["pred", "pred_class", "correct"]] = [
            pred.at[i, "label"],
            pred.at[i, "true_class"],
            True,
        ]
    pred.to_parquet(dst / "predictions.parquet")
    report = json.loads((dst / "report.json").read_text())
    report["accuracy"] = float(pred["correct"].mean())
    (dst / "report.json").write_text(json.dumps(report))
    return 5, 2


def test_compare_page_lists_disagreements_and_mcnemar(page, noisy_eval: Path, tmp_path: Path):
    from intentkit.evaluation.report.compare import mcnemar

    b, c = _doctored_copy(noisy_eval, tmp_path / "b" / "eval")
    out = tmp_path / "cmp"
    assert main(["compare", str(noisy_eval), str(tmp_path / "b"), "--out", str(out)]) == 0
    result = json.loads((out / "compare.json").read_text())
    assert (result["mcnemar"]["b"], result["mcnemar"]["c"]) == (b, c)
    assert result["mcnemar"]["p_value"] == mcnemar(b, c)["p_value"]
    assert result["metrics"]["accuracy"]["delta"] == pytest.approx((c - b) / result["n"])
    path = out / "compare.html"
    _open(page, path)
    page.page.screenshot(path=tmp_path / "compare.png", full_page=True)
    _assert_clean(page, path)
    a_right = page.page.locator("#a-right tbody tr:not(.none) td:first-child").all_inner_texts()
    b_right = page.page.locator("#b-right tbody tr:not(.none) td:first-child").all_inner_texts()
    assert (
        sorted(a_right) == sorted(r["t"] for r in result["a_right_b_wrong"]) and len(a_right) == b
    )
    assert (
        sorted(b_right) == sorted(r["t"] for r in result["b_right_a_wrong"]) and len(b_right) == c
    )
    shown = float(page.page.get_attribute("#p-value", "data-value"))
    assert shown == result["mcnemar"]["p_value"]
    assert "exact binomial" in page.page.inner_text("#verdict")
    page.page.fill("#dis-filter", a_right[0])
    assert page.page.locator("#a-right tbody tr").count() == 1


def test_compact_log_history_keeps_curves_and_is_small(kw_model: Path) -> None:
    from intentkit.training.trainer import compact_log_history

    history = json.loads((kw_model / "intentkit.json").read_text())["training"]["log_history"]
    assert any("eval_macro_f1" in r for r in history) and any("loss" in r for r in history)
    raw = [
        {"loss": 1.0 / (i + 1), "step": i, "epoch": i / 10, "train_runtime": 3.0}
        for i in range(2000)
    ] + [{"eval_loss": 0.5, "eval_accuracy": 0.9, "step": 2000}]
    rows = compact_log_history(raw, max_train=100)
    assert len(rows) == 101 and rows[-1]["eval_accuracy"] == 0.9
    assert "train_runtime" not in rows[0] and rows[0]["step"] == 0 and rows[-2]["step"] == 1999
