"""Each rule is written once (#20 item 4): every place that applies a rule asks its one home, so
changing the rule there changes every caller, and no second copy of its literal remains."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from intentkit.config import DEFAULT_REJECT_LABEL, TrainConfig
from intentkit.evaluation.report import charts
from intentkit.inference import decision
from intentkit.training import setup

SRC = Path(__file__).resolve().parents[1] / "src" / "intentkit"


def _string_constants(path: Path) -> set[str]:
    return {
        node.value
        for node in ast.walk(ast.parse(path.read_text("utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def test_out_of_scope_label_names_come_from_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decision, "OOS_NAMES", ("oos", "unsupported"))
    assert decision.oos_names("none_of_these") == {"oos", "unsupported", "none_of_these"}
    # The report's charts, training's validation split and the model's oos class follow it.
    assert charts.oos_classes({}, {}) == {"oos", "unsupported"}
    assert setup.model_oos_label(TrainConfig(), ["book", "unsupported"]) == "unsupported"
    val = pd.DataFrame({"text": ["a", "b", "c"], "label": ["book", "unsupported", "oos"]})
    ds = SimpleNamespace(train=val.iloc[:1], val=val)
    _, known, oos_val, _ = setup.validation_split(ds, TrainConfig(), ["book"])
    assert known["label"].tolist() == ["book"] and oos_val == ["b", "c"]


def test_no_module_spells_the_out_of_scope_label_itself() -> None:
    # data/sources.py names CLINC150's own "oos" rows (the data, not the rule).
    allowed = {SRC / "inference" / "decision.py", SRC / "data" / "sources.py"}
    spelled = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p not in allowed and "image" not in p.parts and "oos" in _string_constants(p)
    ]
    assert not spelled, f"ask intentkit.inference.decision.oos_names instead: {spelled}"


def test_the_default_reject_label_is_spelled_once() -> None:
    # review.py's "out_of_scope" is the name of a review action, not the answered label.
    allowed = {SRC / "config.py", SRC / "loop" / "review.py"}
    spelled = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p not in allowed and "image" not in p.parts and "out_of_scope" in _string_constants(p)
    ]
    assert not spelled, f"ask intentkit.inference.decision.reject_label_of instead: {spelled}"
    assert decision.reject_label_of(None) == DEFAULT_REJECT_LABEL
    assert decision.reject_label_of({"reject_label": "none_of_these"}) == "none_of_these"


def test_label_list_from_id2label_is_built_once() -> None:
    from intentkit.artifact import labels_of

    # config.json stores str keys, a loaded config int keys; order is by id, not by insertion.
    assert labels_of({"1": "hotel", "0": "flight"}) == labels_of({0: "flight", 1: "hotel"})
    assert labels_of({1: "hotel", 0: "flight"}) == ["flight", "hotel"]
    # What runs inside the SageMaker image must not import intentkit: its copy is tested apart.
    others = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "artifact.py" and "image" not in p.parts and "id2label[" in p.read_text()
    ]
    assert not others, f"build the label list with intentkit.artifact.labels_of: {others}"


def test_intentkit_port_is_parsed_once() -> None:
    from intentkit.config import port_from_env
    from intentkit.errors import ConfigError
    from intentkit.sagemaker.image import serving

    assert port_from_env({"INTENTKIT_PORT": "9001"}) == serving.port_from_env(
        {"INTENTKIT_PORT": "9001"}
    )
    assert port_from_env({}) is None and serving.port_from_env({}) == 8080
    for read in (port_from_env, serving.port_from_env):
        with pytest.raises(ConfigError, match=r"\$INTENTKIT_PORT must be a port number"):
            read({"INTENTKIT_PORT": "80a"})
    spelled = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "config.py" and "INTENTKIT_PORT" in _string_constants(p)
    ]
    assert not spelled, f"read the port with intentkit.config.port_from_env: {spelled}"


def test_selection_and_report_macro_f1_agree_on_the_same_rows() -> None:
    import numpy as np
    from sklearn.metrics import f1_score

    from intentkit.evaluation.evaluate import score
    from intentkit.training.trainer import compute_metrics

    labels = ["book", "cancel", "refund"]
    true = ["book", "book", "cancel", "cancel", "book"]
    # "refund" is only ever predicted and "out_of_scope" (a rejection) has no true row: the cases
    # where "classes in truth" and "classes in truth or predictions" part ways.
    pred = ["book", "refund", "cancel", "out_of_scope", "book"]
    ids = {name: i for i, name in enumerate([*labels, "out_of_scope"])}
    logits = np.eye(len(ids))[[ids[p] for p in pred]]
    selection = compute_metrics(
        SimpleNamespace(predictions=logits, label_ids=np.array([ids[t] for t in true]))
    )
    report = score(true, pred, oos={"oos"}, reject_label="out_of_scope")
    for key in ("accuracy", "macro_f1", "weighted_f1"):
        assert selection[key] == pytest.approx(report[key]), key
    # The mean is over the classes with true rows: a rejection is a missed "cancel", not a class.
    assert report["macro_f1"] == pytest.approx(
        f1_score(true, pred, labels=sorted(set(true)), average="macro")
    )
    assert report["macro_f1"] != pytest.approx(f1_score(true, pred, average="macro"))
    # The per-class table lists the classes the mean is over.
    assert set(report["per_class"]) == {"book", "cancel"}
    mean = np.mean([c["f1"] for c in report["per_class"].values()])
    assert report["macro_f1"] == pytest.approx(mean)


def test_no_module_calls_f1_score_but_metrics() -> None:
    callers = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "metrics.py" and "f1_score" in p.read_text("utf-8")
    ]
    assert not callers, f"score F1 with intentkit.evaluation.metrics: {callers}"


def test_ece_is_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from intentkit.evaluation import evaluate, metrics

    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.55, 0.45]])
    y = np.array([0, 1, 1, 1, 0])
    conf = probs.max(axis=1)
    # The training/calibration ECE, the served-answer ECE of report.json and the report page's
    # reliability chart agree on the same answers...
    answers = [
        {"label": "ab"[int(i)], "confidence": float(c)}
        for i, c in zip(probs.argmax(1), conf, strict=True)
    ]
    served = evaluate.served_calibration(answers, ["ab"[int(i)] for i in y], set(), "out_of_scope")
    pred = pd.DataFrame(
        {"label": ["ab"[int(i)] for i in y], "top1": [a["label"] for a in answers]}
        | {"confidence_raw": conf, "confidence": conf}
    )
    chart = charts.reliability(pred, {"labels": ["a", "b"]})
    want = metrics.expected_calibration_error(probs, y)
    # 15 bins: {0.9 right}, {0.55 right, 0.6 wrong}, {0.7 right}, {0.8 right}.
    assert want == pytest.approx(0.2 * 0.1 + 0.4 * 0.075 + 0.2 * 0.3 + 0.2 * 0.2)
    assert served["ece_all"] == pytest.approx(want)
    assert chart is not None and chart["before"]["ece"] == pytest.approx(want)
    # ...because each asks metrics.calibration_error: change it there and all three follow.
    monkeypatch.setattr(metrics, "calibration_error", lambda c, r, n_bins=15: 0.125)
    assert metrics.expected_calibration_error(probs, y) == 0.125
    assert evaluate.served_calibration(answers, ["a"] * 5, set(), "x")["ece_all"] == 0.125
    assert charts.reliability(pred, {"labels": ["a", "b"]})["after"]["ece"] == 0.125


def test_no_module_writes_the_ece_sum_itself() -> None:
    spelled = [
        str(p.relative_to(SRC))
        for p in [*SRC.rglob("*.py"), *(SRC.parents[1] / "bench").glob("*.py")]
        if p.name != "metrics.py" and "np.abs(acc - " in p.read_text("utf-8").replace("  ", " ")
    ]
    assert not spelled, f"use intentkit.evaluation.metrics.calibration_error: {spelled}"


def _cli_command(name: str) -> object:
    import typer

    from intentkit.cli import _load_commands
    from intentkit.cli.app import app

    _load_commands()
    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


#: CLI option -> (ServeConfig field, negated?) where the names differ.
_SERVE_FIELD = {
    "capture": ("capture", False),
    "graceful_timeout": ("timeout_graceful_s", False),
    "no_reject": ("reject", True),
    "no_playground": ("playground", True),
}


_CAPTURE_FIELD = {"capture_file_mb": "max_file_mb", "capture_max_mb": "max_total_mb"}


def test_serve_defaults_come_from_serve_config() -> None:
    import dataclasses
    import inspect

    from intentkit.config import CaptureConfig, ServeConfig
    from intentkit.endpoints.local import LocalOptions, start_detached
    from intentkit.serve.batcher import MicroBatcher

    fields = {f.name: f.default for f in dataclasses.fields(ServeConfig)}
    checked = set()
    capture_fields = {f.name: f.default for f in dataclasses.fields(CaptureConfig)}
    for param in _cli_command("serve").params:  # type: ignore[attr-defined]
        if param.name in ("model_dir", "takeover"):  # the model, and promote's hidden switch
            continue
        if param.name.startswith("capture_"):  # --capture-X: a CaptureConfig field
            name = _CAPTURE_FIELD.get(param.name, param.name.removeprefix("capture_"))
            assert param.default == capture_fields[name], f"serve --{param.name}"
            continue
        field, negated = _SERVE_FIELD.get(param.name, (param.name, False))
        assert field in fields, f"serve --{param.name} has no ServeConfig field"
        if param.name in ("host", "port"):
            # None = "$INTENTKIT_HOST/PORT, else ServeConfig's": the help must say which.
            assert param.default is None and str(fields[field]) in param.help, param.name
        else:
            want = not fields[field] if negated else fields[field]
            assert param.default == want, f"serve --{param.name}: {param.default} != {want}"
        checked.add(field)
    assert checked == set(fields), f"no serve option for {set(fields) - checked}"
    # deploy's local serve flags pass through to serve (None) or show ServeConfig's value.
    for param in _cli_command("deploy").params:  # type: ignore[attr-defined]
        field = _SERVE_FIELD.get(param.name, (param.name, False))[0]
        if field in fields and param.name not in ("no_reject", "no_playground"):
            assert param.default is None, f"deploy --{param.name}: pass it on or leave it unset"
            if param.name in ("host", "port"):
                assert str(fields[field]) in param.help, param.name
    # The batcher's and the local target's own defaults are ServeConfig's.
    for params in (
        inspect.signature(MicroBatcher.__init__).parameters,
        inspect.signature(start_detached).parameters,
        inspect.signature(LocalOptions).parameters,
    ):
        shared = set(params) & set(fields) - {"split_tokens"}
        assert shared, params
        for name in shared:
            assert params[name].default == fields[name], name


def test_deploy_sagemaker_refuses_local_serve_flags_even_at_their_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from intentkit.cli import main

    state = tmp_path / "state"
    base = ["deploy", str(tmp_path), "--name", "e1", "--target", "sagemaker"]
    for flag, value in (("--port", "8080"), ("--host", "127.0.0.1"), ("--dtype", "fp32")):
        # No AWS is set up: the refusal must come before any request (or credentials check).
        assert main([*base, flag, value, "--state-dir", str(state)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {flag}: only for --target local")
        assert "a SageMaker endpoint always listens on 8080" in err and "Traceback" not in err
    assert not state.exists() or not any(state.iterdir())
