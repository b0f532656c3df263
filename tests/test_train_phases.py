"""Training phases (issue #12 item 2): the breakdown is recorded, adds up, and the lean paths
(metrics from the best evaluation, its logits for calibration) equal the slow ones."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from train_helpers import FAST


def test_phases_recorded_and_sum_to_the_wall_time(
    kw_data: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from intentkit.inference.predictor import Predictor
    from intentkit.training import overhead as lo
    from intentkit.training.train import train

    kept: dict[str, object] = {}
    real = lo.best_val_logits

    def spy(trainer: object, order: np.ndarray) -> np.ndarray | None:
        kept["logits"] = real(trainer, order)
        kept["scores"] = trainer.evaluate()  # what the artifact's metrics used to come from
        return kept["logits"]

    monkeypatch.setattr(lo, "best_val_logits", spy)
    started = time.time() - 1.0  # as if the process had started a second earlier
    out = train(kw_data, tmp_path / "m", model=str(tiny_model_dir), started_at=started, **FAST)
    wall = time.time() - started

    meta = json.loads((out / "intentkit.json").read_text())
    phases = meta["training"]["phases"]
    assert set(lo.PHASES) <= set(phases)
    assert all(phases[k] >= 0 for k in lo.PHASES)
    assert phases["startup"] >= 1.0
    assert phases["train_steps"] > 0 and phases["evaluation"] > 0
    total = sum(phases[k] for k in lo.PHASES)
    assert total == pytest.approx(phases["total_s"], abs=0.01)
    # Loose: the recorded phases cover the call (less the spy's extra evaluate and the return).
    assert 0.5 * wall <= phases["total_s"] <= wall + 0.01
    assert 0 < phases["outside_train_steps_share"] < 1
    assert "## Training time" in (out / "README.md").read_text()
    assert lo.summary_line(phases).startswith("time: ")

    # The best evaluation's metrics are trainer.evaluate()'s after loading the best checkpoint.
    scores = kept["scores"]
    assert meta["metrics"]["accuracy"] == scores["eval_accuracy"]
    assert meta["metrics"]["macro_f1"] == scores["eval_macro_f1"]
    assert meta["metrics"]["loss"] == pytest.approx(scores["eval_loss"], rel=1e-5)
    # Its logits are exactly the Predictor's on the written artifact (so is the calibration).
    val = pd.read_parquet(kw_data / "val.parquet")
    predictor = Predictor.from_dir(out, device="cpu")
    assert kept["logits"] is not None
    expected = predictor.logits(
        val["text"].tolist(), batch_size=meta["train_config"]["eval_batch_size"]
    )
    np.testing.assert_array_equal(kept["logits"], expected)


def test_summary_line_and_share() -> None:
    from intentkit.training.overhead import PhaseTimer, summary_line

    timer = PhaseTimer(started_at=time.time() - 2.0)
    timer.seconds["train_steps"] = 6.0
    phases = timer.as_dict()
    assert phases["outside_train_steps_share"] == pytest.approx(0.25, abs=0.01)
    line = summary_line(phases)
    assert "25% outside training steps" in line and "startup 2.0s" in line
