"""`intentkit tune`: a real Optuna study over real (tiny) training runs.

Trials fix ``--epochs`` (a flag given to tune is not searched) so each lasts seconds; the rest of
the search space is searched as in production.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from train_helpers import assert_one_line_error, cli_cmd, cli_env, run_cli

optuna = pytest.importorskip("optuna")


def tune_args(data: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [
        "tune", "--data", str(data), "--out", str(out), "--model", str(model),
        "--epochs", "2", "--seed", "0", "--device", "cpu", *extra,
    ]  # fmt: skip


def read_results(out: Path) -> dict[str, Any]:
    return json.loads((out / "tune" / "tune.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, kw_data: Path, tiny_model_dir: Path) -> Path:
    """Two trials on the keyword fixture, through the CLI (in-process); treat read-only."""
    from intentkit.cli import main

    out = tmp_path_factory.mktemp("tune") / "model"
    assert main(tune_args(kw_data, out, tiny_model_dir, "--trials", "2")) == 0
    return out


# ----------------------------------------------------------------------------- outputs
def test_two_trials_write_artifact_report_and_preset(tuned: Path) -> None:
    import intentkit
    from intentkit.artifact import check_artifact_dir, read_meta

    check_artifact_dir(tuned)
    answer = intentkit.load(tuned).predict(["book a flight to rome"])[0]
    assert answer["label"] in {
        "car",
        "flight",
        "hotel",
        read_meta(tuned)["calibration"]["reject_label"],
    }
    assert 0.0 < answer["confidence"] <= 1.0
    results = read_results(tuned)
    assert results["counts"] == {"complete": 2} and results["scored_on"] == "validation"
    trials = results["trials"]
    assert [t["number"] for t in trials] == [0, 1]
    assert trials[0]["base_config"] is True  # the search starts from the base config
    for t in trials:
        assert t["state"] == "complete" and t["duration_s"] > 0
        assert set(t["params"]) == {
            "lr",
            "batch_size",
            "warmup_ratio",
            "weight_decay",
            "label_smoothing",
            "layerwise_lr_decay",
            "class_weights",
        }  # fmt: skip  (epochs was fixed by --epochs)
        assert list(t["intermediate_values"]) == ["1", "2"]  # one report per epoch
    best = max(trials, key=lambda t: t["value"])
    meta = read_meta(tuned)
    assert meta["tune"]["trial"] == results["best"]["number"] == best["number"]
    # The score is the artifact's best *validation* metric, never a test number.
    assert meta["metrics"]["macro_f1"] == pytest.approx(best["value"])
    assert meta["train_config"]["lr"] == pytest.approx(best["params"]["lr"])
    # Bounded disk: no trial folder and no checkpoint survives.
    assert list((tuned / "tune" / "trials").iterdir()) == []
    assert not (tuned / "checkpoints").exists()


def test_best_preset_trains(
    capsys: pytest.CaptureFixture[str], tuned: Path, kw_data: Path, tmp_path: Path
) -> None:
    from intentkit.artifact import read_meta
    from intentkit.config import TrainConfig, build, load_preset

    preset = tuned / "tune" / "best-preset.yaml"
    doc = load_preset(str(preset))
    cfg = build(TrainConfig, doc["train"])
    best = read_results(tuned)["best"]["params"]
    assert cfg.lr == pytest.approx(best["lr"]) and cfg.epochs == 2
    out = tmp_path / "m"
    code, err = run_cli(
        capsys, "train", "--data", str(kw_data), "--out", str(out), "--preset", str(preset),
        "--epochs", "1",
    )  # fmt: skip
    assert code == 0, err
    trained = read_meta(out)["train_config"]
    assert trained["class_weights"] == best["class_weights"] and trained["epochs"] == 1


def test_resume_of_a_finished_study_runs_nothing(
    tuned: Path, kw_data: Path, tmp_path: Path
) -> None:
    from intentkit.artifact import check_artifact_dir
    from intentkit.cli import main

    out = tmp_path / "copy"
    shutil.copytree(tuned, out)
    before = (out / "model.safetensors").stat().st_mtime_ns
    assert main(["tune", "--data", str(kw_data), "--out", str(out), "--resume"]) == 0
    assert len(read_results(out)["trials"]) == 2
    assert (out / "model.safetensors").stat().st_mtime_ns == before
    check_artifact_dir(out)


def test_time_budget_lets_the_running_trial_finish(
    kw_data: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from intentkit.training.tune import tune

    out = tune(
        kw_data, tmp_path / "m", time_budget="0.5s", model=str(tiny_model_dir), epochs=1,
        seed=0, device="cpu",
    )  # fmt: skip
    results = read_results(out)
    # The first trial outlasts the 0.5 s budget and still completes; no second one starts.
    assert results["counts"] == {"complete": 1} and results["time_budget_s"] == 0.5
    assert results["trials"][0]["duration_s"] > 0.5


# ----------------------------------------------------------------------------- pruning
def test_default_pruner_stops_a_trial_far_below_at_its_first_evaluation() -> None:
    from optuna.trial import create_trial

    from intentkit.training.tune import default_pruner, pruning_callback

    study = optuna.create_study(direction="maximize", pruner=default_pruner())
    for first in (0.80, 0.90):  # two finished trials (the pruner's startup) with 2 evaluations
        study.add_trial(create_trial(value=first + 0.05, intermediate_values={1: first, 2: 0.9}))
    bad, good = study.ask(), study.ask()
    with pytest.raises(optuna.TrialPruned, match="evaluation 1"):
        pruning_callback(bad, "macro_f1").on_evaluate(
            None, None, None, metrics={"eval_macro_f1": 0.2}
        )
    callback = pruning_callback(good, "macro_f1")
    callback.on_evaluate(None, None, None, metrics={"eval_macro_f1": 0.88})  # not pruned
    assert good.storage.get_trial(good._trial_id).intermediate_values == {1: 0.88}
    # train() re-scores the best checkpoint after training: not one more report.
    callback.on_train_end(None, None, None)
    callback.on_evaluate(None, None, None, metrics={"eval_macro_f1": 0.0})
    assert good.storage.get_trial(good._trial_id).intermediate_values == {1: 0.88}


def test_pruned_trial_stops_training_at_first_evaluation(
    kw_data: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from intentkit.errors import IntentkitError
    from intentkit.training.tune import tune

    out = tmp_path / "m"
    with pytest.raises(IntentkitError, match="no trial completed"):
        tune(
            kw_data, out, trials=1, pruner=optuna.pruners.ThresholdPruner(lower=0.99),
            model=str(tiny_model_dir), epochs=5, lr=1e-6, seed=0, device="cpu",
        )  # fmt: skip
    (trial,) = read_results(out)["trials"]
    assert trial["state"] == "pruned"
    assert list(trial["intermediate_values"]) == ["1"]  # 1 of 5 epochs ran
    assert not (out / "intentkit.json").exists()
    assert list((out / "tune" / "trials").iterdir()) == []


# ----------------------------------------------------------------------------- resume after kill
def _wait_for_second_trial(out: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until trial 0 is finished (tune.json says so) and trial 1 trains (its folder exists).

    Files, not the study DB: polling SQLite while the DB is being created races its tables.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"tune exited ({proc.returncode}) before a second trial started")
        report = out / "tune" / "tune.json"
        if report.is_file() and (out / "tune" / "trials" / "1").is_dir():
            assert read_results(out)["counts"] == {"complete": 1}
            return
        time.sleep(0.05)
    pytest.fail("no finished trial appeared")


@pytest.mark.slow
def test_killed_tune_resumes_the_study(kw_data: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    args = tune_args(kw_data, out, tiny_model_dir, "--trials", "2")
    args[args.index("--epochs") + 1] = "3"  # a trial lasts seconds: long enough to be killed in
    proc = subprocess.Popen(
        cli_cmd(*args), env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_for_second_trial(out, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "intentkit.json").exists()  # killed: no artifact yet

    # --resume alone: the study holds the base config and the trial target.
    res = subprocess.run(
        cli_cmd("tune", "--data", str(kw_data), "--out", str(out), "--resume"),
        env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "were interrupted and run again" in res.stdout
    results = read_results(out)
    assert results["counts"] == {"complete": 2, "fail": 1}
    killed, retry = results["trials"][1], results["trials"][2]
    assert killed["state"] == "fail" and retry["retry_of"] == 1
    assert retry["params"] == killed["params"] and retry["state"] == "complete"
    assert list((out / "tune" / "trials").iterdir()) == []
    from intentkit.artifact import check_artifact_dir

    check_artifact_dir(out)


# ----------------------------------------------------------------------------- user errors
@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--trials", "2", "--time-budget", "30m"], ["--trials", "--time-budget"]),
        (["--time-budget", "half an hour"], ["--time-budget half an hour", "30m"]),
        (["--time-budget", "0s"], ["--time-budget", "positive"]),
        (["--trials", "0"], ["--trials must be at least 1"]),
        (["--force", "--resume"], ["--force", "--resume"]),
        (["--resume"], ["--resume", "no study"]),
        (["--preset", "missing.yaml"], ["--preset missing.yaml", "no such file"]),
        (["--class-weights", "inverse"], ["--class-weights"]),
    ],
)
def test_bad_flags_are_one_line_errors(
    capsys: pytest.CaptureFixture[str],
    kw_data: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    extra: list[str],
    needles: list[str],
) -> None:
    out = tmp_path / "m"
    code, err = run_cli(capsys, *tune_args(kw_data, out, tiny_model_dir, *extra))
    assert_one_line_error(code, err, *needles)
    assert not out.exists()  # nothing was created before the inputs were checked


def test_existing_out_needs_force_or_resume(
    capsys: pytest.CaptureFixture[str], kw_data: Path, tiny_model_dir: Path, tuned: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    out = tmp_path / "m"
    out.mkdir()
    (out / "x").write_text("x")
    code, err = run_cli(capsys, *tune_args(kw_data, out, tiny_model_dir))
    assert_one_line_error(code, err, f"--out {out}", "--force")
    code, err = run_cli(capsys, *tune_args(kw_data, tuned, tiny_model_dir))
    assert_one_line_error(code, err, "--resume", "--force")
    # Resuming with a base config other than the study's would mix two searches.
    code, err = run_cli(
        capsys, *tune_args(kw_data, tuned, tiny_model_dir, "--resume", "--lr", "1e-3")
    )
    assert_one_line_error(code, err, "--lr", "the study was started without it")


# ----------------------------------------------------------------------------- pieces
@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800.0), ("1800s", 1800.0), ("1h", 3600.0), ("90", 90.0)]
)
def test_time_budget_strings(text: str, seconds: float) -> None:
    from intentkit.training.tune import parse_time_budget

    assert parse_time_budget(text) == seconds


@pytest.mark.parametrize("name", ["banking77-minilm", "clinc150-minilm", "cpu-fast"])
def test_quality_presets_lie_inside_the_space(name: str) -> None:
    # The first trial replays the base preset; it must not lose any of its values.
    from intentkit.config import TrainConfig, build, load_preset
    from intentkit.training.tune import SPACE, _base_params

    cfg = build(TrainConfig, load_preset(name)["train"])
    assert set(_base_params(cfg, SPACE)) == set(SPACE)


@pytest.mark.parametrize(
    ("text", "needle"), [("a: [", "not valid YAML at line"), ("- 1\n- 2\n", "expected a mapping")]
)
def test_preset_file_errors(tmp_path: Path, text: str, needle: str) -> None:
    from intentkit.config import load_preset
    from intentkit.errors import ConfigError

    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_preset(str(path))
