"""`intentkit train` from the command line: bad input, resume after kill -9, torchrun (DDP)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from train_helpers import (
    FAST,
    assert_one_line_error,
    cli_cmd,
    cli_env,
    keywords_prepared,
    run_cli,
)


@pytest.fixture(scope="module")
def kw_data(tmp_path_factory: pytest.TempPathFactory, keywords_jsonl: Path) -> Path:
    return keywords_prepared(keywords_jsonl, tmp_path_factory.mktemp("kw") / "data")


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("missing", ["labels.json", "train.parquet"])
def test_data_dir_missing_files(
    capsys: pytest.CaptureFixture[str], kw_data: Path, tmp_path: Path, missing: str
) -> None:
    data = tmp_path / "data"
    shutil.copytree(kw_data, data)
    (data / missing).unlink()
    code, err = run_cli(capsys, "train", "--data", str(data), "--out", str(tmp_path / "m"))
    assert_one_line_error(code, err, missing, "intentkit data prepare")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("value", "needle"), [("4", "--max-length must be at least 8"), ("256", "limit 128")]
)
def test_max_length_out_of_range_leaves_existing_output(
    capsys: pytest.CaptureFixture[str],
    kw_data: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    value: str,
    needle: str,
) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("previous model")
    code, err = run_cli(
        capsys, "train", "--data", str(kw_data), "--out", str(out), "--force",
        "--model", str(tiny_model_dir), "--max-length", value,
    )  # fmt: skip
    assert_one_line_error(code, err, needle)
    # --force must not have deleted anything: validation happens before the folder is touched.
    assert (out / "keep.txt").read_text() == "previous model"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda(
    capsys: pytest.CaptureFixture[str], kw_data: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    code, err = run_cli(
        capsys, "train", "--data", str(kw_data), "--out", str(tmp_path / "m"),
        "--model", str(tiny_model_dir), "--device", "cuda",
    )  # fmt: skip
    assert_one_line_error(code, err, "--device cuda", "--device cpu")
    assert not (tmp_path / "m").exists()


def test_resume_without_checkpoint(
    capsys: pytest.CaptureFixture[str], kw_data: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    code, err = run_cli(
        capsys, "train", "--data", str(kw_data), "--out", str(tmp_path / "m"),
        "--model", str(tiny_model_dir), "--resume",
    )  # fmt: skip
    assert_one_line_error(code, err, "--resume", "no complete checkpoint")


def test_force_and_resume_together(
    capsys: pytest.CaptureFixture[str], kw_data: Path, tmp_path: Path
) -> None:
    code, err = run_cli(
        capsys, "train", "--data", str(kw_data), "--out", str(tmp_path / "m"), "--force",
        "--resume",
    )  # fmt: skip
    assert_one_line_error(code, err, "--force", "--resume")


def test_out_not_empty_without_force(
    capsys: pytest.CaptureFixture[str], kw_data: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / "x").write_text("x")
    code, err = run_cli(
        capsys, "train", "--data", str(kw_data), "--out", str(out), "--model", str(tiny_model_dir)
    )
    assert_one_line_error(code, err, "--out", "--force")
    assert [p.name for p in out.iterdir()] == ["x"]


def test_unknown_preset_lists_presets(
    capsys: pytest.CaptureFixture[str], kw_data: Path, tmp_path: Path
) -> None:
    code, err = run_cli(
        capsys, "train", "--data", str(kw_data), "--out", str(tmp_path / "m"), "--preset", "nope"
    )
    assert_one_line_error(code, err, "nope", "cpu-fast", "seed-bitext-travel")


def test_default_model_offline_names_minilm(
    capsys: pytest.CaptureFixture[str], kw_data: Path, tmp_path: Path
) -> None:
    code, err = run_cli(capsys, "train", "--data", str(kw_data), "--out", str(tmp_path / "m"))
    assert_one_line_error(code, err, "modernbert-base", "--model minilm")
    assert not (tmp_path / "m").exists()


def test_bad_flag_value_names_flag(
    capsys: pytest.CaptureFixture[str], kw_data: Path, tmp_path: Path
) -> None:
    code, err = run_cli(
        capsys, "train", "--data", str(kw_data), "--out", str(tmp_path / "m"),
        "--class-weights", "inverse",
    )  # fmt: skip
    assert_one_line_error(code, err, "--class-weights")


# ----------------------------------------------------------------------------- resume
def _wait_for_checkpoint(ckpts: Path, proc: subprocess.Popen, timeout: float = 120) -> Path:
    from intentkit.training.checkpoints import complete_checkpoints

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = complete_checkpoints(ckpts)
        if done:
            return done[0]
        if proc.poll() is not None:
            pytest.fail(f"training exited ({proc.returncode}) before the first checkpoint")
        time.sleep(0.02)
    pytest.fail("no checkpoint appeared")


def test_resume_after_kill_9_continues_from_checkpoint(
    kw_data: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m"
    args = [
        "train", "--data", str(kw_data), "--out", str(out), "--model", str(tiny_model_dir),
        "--epochs", "30", "--batch-size", "16", "--lr", "3e-3", "--eval-steps", "10",
        "--seed", "0", "--no-calibrate", "--device", "cpu",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cli_cmd(*args), env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_for_checkpoint(out / "checkpoints", proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "intentkit.json").exists()  # killed: no artifact, not a half one

    from intentkit.training.checkpoints import complete_checkpoints

    last = complete_checkpoints(out / "checkpoints")[-1]
    last_step = int(last.name.split("-")[1])
    total = 30 * 8  # 120 rows / batch 16 = 8 steps per epoch
    assert last_step < total

    # --resume alone: the stored run config supplies the other flags.
    res = subprocess.run(
        cli_cmd("train", "--data", str(kw_data), "--out", str(out), "--resume"),
        env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    # The user is told where the run picks up (8 steps per epoch).
    assert f"resumed from step {last_step} of {total} (epoch {last_step / 8:.2f})" in res.stdout
    meta = json.loads((out / "intentkit.json").read_text())
    assert meta["training"]["resumed_from"] == str(last)
    assert meta["training"]["resumed_step"] == last_step
    assert meta["training"]["started_at_step"] == last_step  # not from step 0
    assert meta["training"]["global_step"] == total
    assert meta["train_config"]["epochs"] == 30 and meta["train_config"]["lr"] == 3e-3


# ----------------------------------------------------------------------------- DDP
@pytest.mark.slow
def test_torchrun_two_processes_write_one_artifact(
    kw_data: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    torchrun = shutil.which("torchrun") or str(Path(cli_cmd()[0]).parent / "torchrun")
    out = tmp_path / "m"
    cmd = [
        torchrun, "--nproc_per_node", "2", "--master_port", "29517", "-m", "intentkit", "train",
        "--data", str(kw_data), "--out", str(out), "--model", str(tiny_model_dir),
        "--device", "cpu", *(f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()),
    ]  # fmt: skip
    res = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    meta = json.loads((out / "intentkit.json").read_text())
    assert meta["training"]["world_size"] == 2
    # Each of the 2 ranks sees half the 120 rows: 4 steps/epoch of 2 x 16 rows.
    assert meta["training"]["global_step"] == FAST["epochs"] * 4
    top = sorted(p.name for p in out.iterdir())
    assert top.count("model.safetensors") == 1 and top.count("intentkit.json") == 1
    assert not [n for n in top if n.startswith(".")]  # no temp folders from a second writer
    assert res.stdout.count("model written to") == 2  # both ranks finished, after the artifact
