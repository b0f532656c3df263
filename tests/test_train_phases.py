"""Training phases (issue #12 item 2): the breakdown is recorded, adds up, and the lean paths
(metrics from the best evaluation, its logits and CLS features for calibration, the paused
garbage collector) equal the slow ones."""

from __future__ import annotations

import gc
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
    from intentkit.training import timing as lo
    from intentkit.training.train import train
    from intentkit.training.trainer import IntentTrainer

    kept: dict[str, object] = {}
    real = IntentTrainer.best_validation

    def spy(trainer: IntentTrainer, order: np.ndarray) -> tuple:
        kept["logits"], kept["features"] = real(trainer, order)
        kept["scores"] = trainer.evaluate()  # what the artifact's metrics used to come from
        return kept["logits"], kept["features"]

    monkeypatch.setattr(IntentTrainer, "best_validation", spy)
    from intentkit import fsutil

    written: list[str] = []  # every text file written (atomic_write_json goes through it)
    real_write = fsutil.atomic_write_text

    def counted(path: Path, *args: object, **kwargs: object) -> None:
        written.append(Path(path).name)
        real_write(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fsutil, "atomic_write_text", counted)
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
    # The artifact is written once: no second pass to add the phases.
    assert written.count("intentkit.json") == 1 and written.count("README.md") == 1, written
    card = (out / "README.md").read_text()
    # Written once, after the save: the card shows the phases intentkit.json records.
    assert "## Training time" in card and f"| write | {phases['write']:.2f} |" in card
    assert phases["write"] > 0
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
    # So are its CLS features (the out-of-scope fit reads them instead of a pass over val).
    assert kept["features"] is not None
    _, cls = predictor.features(
        val["text"].tolist(), batch_size=meta["train_config"]["eval_batch_size"]
    )
    np.testing.assert_array_equal(kept["features"], cls)
    # The collector is back as train() found it: on, nothing left frozen.
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_paused_gc_restores_the_collector_even_on_errors() -> None:
    from intentkit.training.setup import paused_gc

    assert gc.isenabled() and gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), paused_gc() as settle:
        assert not gc.isenabled()
        settle()
        assert gc.isenabled() and gc.get_freeze_count() > 0
        raise RuntimeError("boom")
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with paused_gc():  # an error before settle(): collection back on all the same
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:  # a caller that turned the collector off keeps it off
        with paused_gc() as settle:
            settle()
            assert not gc.isenabled() and gc.get_freeze_count() == 0
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_known_outputs_answers_texts_it_has_run() -> None:
    from intentkit.training.setup import KnownOutputs

    calls: list[tuple[str, tuple[str, ...]]] = []

    class Fake:
        labels = ["a", "b"]

        def features(self, texts: list[str], batch_size: int = 64) -> tuple:
            calls.append(("features", tuple(texts)))
            return np.ones((len(texts), 2)), np.zeros((len(texts), 3))

        def logits(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
            calls.append(("logits", tuple(texts)))
            return np.full((len(texts), 2), 2.0)

    known = KnownOutputs(Fake())
    val_logits, val_cls = np.eye(2), np.arange(6.0).reshape(2, 3)
    known.remember(["x", "y"], val_logits, val_cls)
    assert known.features(["x", "y"])[1] is val_cls and known.logits(["x", "y"]) is val_logits
    assert calls == [] and known.labels == ["a", "b"]
    known.features(["z"])
    known.features(["z"])
    np.testing.assert_array_equal(known.logits(["z"]), np.ones((1, 2)))  # from that pass
    np.testing.assert_array_equal(known.logits(["w"]), np.full((1, 2), 2.0))
    assert calls == [("features", ("z",)), ("logits", ("w",))]


def test_summary_line_and_share() -> None:
    from intentkit.training.timing import PhaseTimer, summary_line

    timer = PhaseTimer(started_at=time.time() - 2.0)
    timer.seconds["train_steps"] = 6.0
    phases = timer.as_dict()
    assert phases["outside_train_steps_share"] == pytest.approx(0.25, abs=0.01)
    line = summary_line(phases)
    assert "25% outside training steps" in line and "startup 2.0s" in line


def test_the_contrastive_pair_stage_counts_as_training_work() -> None:
    # A contrastive run's encoder steps happen in pair_training: a line saying "100% outside
    # training steps" for a run that trained for 20 minutes would be false.
    from intentkit.training.timing import PhaseTimer

    timer = PhaseTimer(started_at=time.time() - 2.0)
    timer.seconds["pair_training"] = 4.0
    timer.seconds["train_steps"] = 2.0
    assert timer.as_dict()["outside_train_steps_share"] == pytest.approx(0.25, abs=0.01)
