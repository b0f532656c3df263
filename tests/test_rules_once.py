"""Each rule is written once (#20 item 4): every place that applies a rule asks its one home, so
changing the rule there changes every caller, and no second copy of its literal remains."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from intentkit.config import TrainConfig
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
