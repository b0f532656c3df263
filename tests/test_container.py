"""`intentkit container train|serve` over a temp /opt/ml tree ($INTENTKIT_OPT_ML), no Docker.

Hyperparameters are strings, as SageMaker writes them; the model is the tiny ModernBERT folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd
import pytest

from intentkit.artifact import check_artifact_dir
from intentkit.errors import ConfigError
from intentkit.sagemaker.image.hyperparameters import parse_hyperparameters
from intentkit.sagemaker.image.paths import OptMl, Resources, read_resources
from intentkit.sagemaker.image.serving import port_from_env
from intentkit.sagemaker.image.training import (
    distributed_env,
    failure_reported,
    processes_per_host,
    torchrun_command,
)
from intentkit.training.checkpoints import complete_checkpoints
from serve_helpers import free_port, make_artifact
from train_helpers import cli_cmd, cli_env, keywords_prepared

LABELS = {"flight", "hotel", "car"}


def container_cmd(*args: str) -> list[str]:
    """``python -m intentkit container ARGS``: what the image's entry point runs."""
    return cli_cmd("container", *args)


def hyperparameters(tiny_model_dir: Path, **more: str) -> dict[str, str]:
    """FAST-like settings as SageMaker sends them: every value a string."""
    hp = {
        "model": str(tiny_model_dir),
        "epochs": "5",
        "batch-size": "16",
        "lr": "0.01",
        "warmup_ratio": "0.1",
        "seed": "0",
        "device": "cpu",
        "sagemaker_program": "ignored.py",  # the SDK injects these; they must not fail the job
        "_tuning_objective_metric": "validation:macro_f1",  # a tuning job adds this one
    }
    return {**hp, **more}


def raw_csv_channel(keywords_jsonl: Path) -> Callable[[Path], None]:
    """A channel holding one CSV whose columns have non-default names (utterance, intent)."""

    def write(folder: Path) -> None:
        df = pd.read_json(keywords_jsonl, lines=True)
        df.rename(columns={"text": "utterance", "label": "intent"}).to_csv(
            folder / "intents.csv", index=False
        )

    return write


def make_opt_ml(
    root: Path,
    hp: dict[str, str],
    channels: dict[str, Callable[[Path], None]],
    *,
    hosts: list[str] | None = None,
    current_host: str | None = None,
    **resource_config: str,
) -> OptMl:
    """Write the tree SageMaker mounts: config files and one folder per channel."""
    paths = OptMl(root)
    paths.hyperparameters.parent.mkdir(parents=True)
    paths.hyperparameters.write_text(json.dumps(hp))
    config = {name: {"TrainingInputMode": "File"} for name in channels}
    paths.input_data_config.write_text(json.dumps(config))
    hosts = hosts or ["algo-1"]
    resources = {"current_host": current_host or hosts[0], "hosts": hosts, **resource_config}
    paths.resource_config.write_text(json.dumps(resources))
    for name, write in channels.items():
        (paths.data / name).mkdir(parents=True)
        write(paths.data / name)
    return paths


def env_for(paths: OptMl, **more: str) -> dict[str, str]:
    return {**cli_env(), "INTENTKIT_OPT_ML": str(paths.root), **more}


def run_train(paths: OptMl, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        container_cmd("train"), env=env_for(paths), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def assert_servable(paths: OptMl) -> dict:
    check_artifact_dir(paths.model)
    assert not (paths.model / "checkpoints").exists()  # they live in ROOT/checkpoints
    assert complete_checkpoints(paths.checkpoints)
    assert not paths.failure.exists()
    return json.loads((paths.model / "intentkit.json").read_text())


# ----------------------------------------------------------------------------- train + serve
@pytest.mark.slow
def test_train_raw_csv_channel_then_serve(
    tiny_model_dir: Path, keywords_jsonl: Path, tmp_path: Path
) -> None:
    hp = hyperparameters(tiny_model_dir, **{"text-column": "utterance", "label-column": "intent"})
    paths = make_opt_ml(tmp_path / "opt_ml", hp, {"train": raw_csv_channel(keywords_jsonl)})
    res = run_train(paths)
    assert res.returncode == 0, res.stderr[-3000:]
    meta = assert_servable(paths)
    assert set(meta["labels"]) == LABELS
    assert meta["training"]["resumed_from"] is None
    assert meta["train_config"]["epochs"] == 5.0 and meta["train_config"]["batch_size"] == 16
    assert meta["data"]["path"].startswith(str(paths.root / "input" / "prepared"))
    stats = json.loads((paths.root / "input" / "prepared" / "train" / "stats.json").read_text())
    assert stats["source"]["text_column"] == "utterance" and stats["options"]["seed"] == 0

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            container_cmd("serve"), env=env_for(paths, INTENTKIT_PORT=str(port)),
            stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/ping", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "container serve never answered /ping"
            time.sleep(0.1)
        r = httpx.post(f"{url}/invocations", json={"text": "book a flight to paris"}, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) >= {"predicted_class", "confidence"}
        assert body["predicted_class"] in LABELS | {"out_of_scope"}
        assert 0.0 <= body["confidence"] <= 1.0
        # A batch-transform MultiRecord request: ~1.1 MiB, 30,000 lines, far over `intentkit
        # serve`'s 1 MB / 1024-text limits; the container admits what SageMaker sends.
        lines = [json.dumps({"text": f"book flight number {i} to paris"}) for i in range(30000)]
        payload = "\n".join(lines).encode()
        assert len(payload) > 2**20
        r = httpx.post(
            f"{url}/invocations", content=payload, timeout=300,
            headers={"content-type": "application/jsonlines", "accept": "application/jsonlines"},
        )  # fmt: skip
        assert r.status_code == 200, r.text[:500]
        answers = [json.loads(x) for x in r.text.splitlines()]
        assert len(answers) == 30000 and set(answers[-1]) >= {"predicted_class", "confidence"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    # uvicorn re-raises the signal once its graceful shutdown is done (exit -15, not 0).
    assert proc.returncode in (0, -signal.SIGTERM), log.read_text()[-3000:]
    assert "Application shutdown complete" in log.read_text()


def test_prepared_dataset_channel_is_used_as_is(
    tiny_model_dir: Path, keywords_jsonl: Path, tmp_path: Path
) -> None:
    def prepared(folder: Path) -> None:
        keywords_prepared(keywords_jsonl, folder)

    # One channel not named "train": the only channel is the training data.
    hp = hyperparameters(tiny_model_dir, epochs="1", calibrate="false")
    paths = make_opt_ml(tmp_path / "opt_ml", hp, {"training": prepared})
    res = run_train(paths)
    assert res.returncode == 0, res.stderr[-3000:]
    meta = assert_servable(paths)
    assert meta["data"]["path"] == str((paths.data / "training").resolve())
    assert meta["data"]["n_train"] == 120 and meta["calibration"] is None
    assert not (paths.root / "input" / "prepared").exists()


# ----------------------------------------------------------------------------- user errors
@pytest.mark.parametrize(
    ("change", "needles"),
    [
        ({"epoch": "3"}, ["'epoch'", "known keys are", "epochs", "batch-size"]),
        ({"epochs": "three"}, ["'epochs'", "not a number"]),
    ],
    ids=["unknown-key", "non-numeric-epochs"],
)
def test_bad_hyperparameter_fails_with_one_line(
    tiny_model_dir: Path,
    keywords_jsonl: Path,
    tmp_path: Path,
    change: dict[str, str],
    needles: list[str],
) -> None:
    hp = {**hyperparameters(tiny_model_dir), **change}
    paths = make_opt_ml(tmp_path / "opt_ml", hp, {"train": raw_csv_channel(keywords_jsonl)})
    res = run_train(paths, timeout=120)
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    reason = paths.failure.read_text()
    assert reason.endswith("\n") and reason.count("\n") == 1
    for needle in needles:
        assert needle in reason, reason
    assert f"error: {reason.strip()}" in res.stderr
    assert not paths.model.exists() or not any(paths.model.iterdir())


def test_unexpected_error_is_reported_and_reraised(tmp_path: Path) -> None:
    paths = OptMl(tmp_path / "opt_ml")
    paths.failure.parent.mkdir(parents=True)
    paths.failure.write_text("stale reason from an earlier run\n")
    with pytest.raises(ZeroDivisionError), failure_reported(paths):
        1 / 0  # noqa: B018
    reason = paths.failure.read_text()
    assert reason.startswith("ZeroDivisionError: division by zero") and reason.count("\n") == 1


# ----------------------------------------------------------------------------- resume
@pytest.mark.slow
def test_train_killed_after_checkpoint_resumes_from_it(
    tiny_model_dir: Path, keywords_jsonl: Path, tmp_path: Path
) -> None:
    hp = hyperparameters(
        tiny_model_dir, epochs="30", lr="3e-3", calibrate="false", **{"eval-steps": "10"}
    )
    paths = make_opt_ml(tmp_path / "opt_ml", hp, {"train": raw_csv_channel(keywords_jsonl)})
    log = tmp_path / "train.log"
    with log.open("w") as fh:  # a file, not a pipe: tqdm could fill a pipe and stall training
        proc = subprocess.Popen(
            container_cmd("train"), env=env_for(paths), stdout=fh, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 180
        while not complete_checkpoints(paths.checkpoints):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # a spot interruption without grace
    finally:
        proc.wait(timeout=30)
    assert not (paths.model / "intentkit.json").exists()
    last = complete_checkpoints(paths.checkpoints)[-1]

    res = run_train(paths)  # the same job started again: no flag says "resume"
    assert res.returncode == 0, res.stderr[-3000:]
    meta = assert_servable(paths)
    resumed = meta["training"]["resumed_from"]
    assert resumed == str(last) and Path(resumed).parent == paths.checkpoints
    assert meta["training"]["started_at_step"] == int(last.name.split("-")[1])


# ----------------------------------------------------------------------------- multi-host
@pytest.mark.slow
def test_two_hosts_train_one_model_with_torchrun(
    tiny_model_dir: Path, keywords_jsonl: Path, tmp_path: Path
) -> None:
    hosts = ["127.0.0.1", "localhost"]  # two names for this machine: two SageMaker hosts
    hp = hyperparameters(
        tiny_model_dir, **{"text-column": "utterance", "label-column": "intent", "epochs": "2"}
    )
    roots = [
        make_opt_ml(
            tmp_path / f"host{i}",
            hp,
            {"train": raw_csv_channel(keywords_jsonl)},
            hosts=hosts,
            current_host=host,
        )  # fmt: skip
        for i, host in enumerate(hosts)
    ]
    port = str(free_port())
    # Logs go to files, not pipes: a full pipe would stall one rank and hang the other.
    logs = [tmp_path / f"host{i}.log" for i in range(len(hosts))]
    procs = []
    for paths, log in zip(roots, logs, strict=True):
        with log.open("w") as fh:
            procs.append(
                subprocess.Popen(
                    container_cmd("train"),
                    env=env_for(paths, MASTER_PORT=port),
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            )
    for proc, log in zip(procs, logs, strict=True):
        proc.wait(timeout=600)
        assert proc.returncode == 0, log.read_text()[-3000:]
    meta = assert_servable(roots[0])
    assert meta["training"]["world_size"] == 2
    assert not (roots[1].model / "intentkit.json").exists()  # only rank 0 writes the artifact


# ----------------------------------------------------------------------------- parity
def test_sagemaker_target_hyperparameters_round_trip() -> None:
    # `train --target sagemaker` writes the resolved config as strings; the container must read
    # back exactly that config, or the job trains something else than the user asked for.
    from intentkit.config import TrainConfig, to_dict
    from intentkit.sagemaker.image.hyperparameters import check_train_config, parse_hyperparameters
    from intentkit.sagemaker.training_job import hyperparameters as to_hyperparameters

    cfg = TrainConfig(
        model="minilm", epochs=2.5, lr=3e-5, warmup_steps=10, calibrate=False,
        extra={"a": [1, 2]}, oos_label="oos", dropout=0.1,
    )  # fmt: skip
    hp = to_hyperparameters(cfg)
    assert all(isinstance(v, str) for v in hp.values())
    assert to_dict(check_train_config(parse_hyperparameters(hp))) == to_dict(cfg)


# ----------------------------------------------------------------------------- SageMaker's extras
def test_sagemaker_reserved_hyperparameters_are_accepted() -> None:
    # A tuning job adds `_tuning_objective_metric` to every training job it starts; built-in
    # algorithms' `_kvstore` and the SDK's `sagemaker_*` keys are SageMaker's too.
    hp = parse_hyperparameters(
        {"epochs": "2", "_tuning_objective_metric": "validation:macro_f1", "_kvstore": "dist",
         "sagemaker_job_name": '"job-1"'}
    )  # fmt: skip
    assert hp.train == {"epochs": 2.0} and hp.data == {} and hp.preset is None
    with pytest.raises(ConfigError, match="unknown hyperparameter 'tuning_objective_metric'"):
        parse_hyperparameters({"tuning_objective_metric": "x"})  # ours must still be spelled right


@pytest.mark.parametrize(
    ("environ", "port"),
    [
        ({}, 8080),
        ({"INTENTKIT_PORT": "9000"}, 9000),
        ({"SAGEMAKER_BIND_TO_PORT": "9001", "INTENTKIT_PORT": "9000"}, 9001),
        ({"SAGEMAKER_BIND_TO_PORT": "", "INTENTKIT_PORT": "9000"}, 9000),
    ],
)
def test_port_sagemaker_bind_to_port_wins(environ: dict[str, str], port: int) -> None:
    assert port_from_env(environ) == port


def test_bad_bind_to_port_is_one_line_exit_2(tmp_path: Path) -> None:
    env = {**cli_env(), "INTENTKIT_OPT_ML": str(tmp_path), "SAGEMAKER_BIND_TO_PORT": "70000"}
    res = subprocess.run(
        container_cmd("serve"), env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "$SAGEMAKER_BIND_TO_PORT must be a port number (1-65535), got '70000'" in res.stderr


def test_dockerfile_accepts_bind_to_port() -> None:
    # SageMaker only sets SAGEMAKER_BIND_TO_PORT for images that declare this label.
    text = (Path(__file__).parents[1] / "Dockerfile").read_text()
    assert "\nLABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true\n" in text
    assert "port_from_env(os.environ)" in text  # the health check follows the same port


def test_serve_on_bind_to_port_and_workers_not_silently_ignored(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    paths = OptMl(tmp_path / "opt_ml")
    make_artifact(tiny_model_dir, paths.model)
    bind, other = free_port(), free_port()
    env = {**cli_env(), "INTENTKIT_OPT_ML": str(paths.root), "SAGEMAKER_BIND_TO_PORT": str(bind),
           "INTENTKIT_PORT": str(other), "SAGEMAKER_MODEL_SERVER_WORKERS": "4"}  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            container_cmd("serve"), env=env, stdout=fh, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{bind}/ping", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "no answer on $SAGEMAKER_BIND_TO_PORT"
            time.sleep(0.1)
        r = httpx.post(f"http://127.0.0.1:{bind}/invocations", json={"text": "hi"}, timeout=30)
        assert r.status_code == 200 and "predicted_class" in r.json()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{other}/ping", timeout=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    text = log.read_text()
    assert text.count("$SAGEMAKER_MODEL_SERVER_WORKERS=4 is not used") == 1, text[-3000:]


@pytest.mark.parametrize(
    ("hosts", "gpus", "expected"),
    [(1, 0, None), (1, 1, None), (1, 4, 4), (2, 0, 1), (2, 1, 1), (2, 8, 8)],
)
def test_processes_per_host(hosts: int, gpus: int, expected: int | None) -> None:
    names = [f"algo-{i + 1}" for i in range(hosts)]
    assert processes_per_host(Resources(names, names[0]), gpus) == expected


def test_one_host_with_four_gpus_trains_under_torchrun(tmp_path: Path) -> None:
    # No GPU here: the decision and the command line are what can be checked.
    paths = OptMl(tmp_path)
    resources = Resources(["algo-1"], "algo-1")
    hp = parse_hyperparameters({"epochs": "2", "batch-size": "8"})
    cmd = torchrun_command(
        paths=paths, data=tmp_path / "data", hp=hp, resources=resources, resume=False,
        master_port=29500, nproc_per_node=processes_per_host(resources, 4) or 0,
    )  # fmt: skip
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert {"--nnodes=1", "--node_rank=0", "--nproc_per_node=4", "--master_addr=127.0.0.1"} <= set(
        cmd
    )
    assert cmd[cmd.index("intentkit") :][:2] == ["intentkit", "train"]
    assert {"--epochs=2.0", "--batch-size=8", "--force"} <= set(cmd)


@pytest.mark.parametrize(
    ("instance", "expected"),
    [
        ("ml.p4d.24xlarge", {"FI_PROVIDER": "efa", "FI_EFA_USE_DEVICE_RDMA": "1",
                             "RDMAV_FORK_SAFE": "1"}),
        ("ml.g5.48xlarge", {"FI_PROVIDER": "efa"}),  # EFA without RDMA: setting it aborts NCCL
        ("ml.g5.xlarge", {}),
        (None, {}),
    ],
)  # fmt: skip
def test_nccl_interface_and_efa_settings_reach_training_processes(
    tmp_path: Path, instance: str | None, expected: dict[str, str]
) -> None:
    extra = {"network_interface_name": "eth0"}
    if instance:
        extra["current_instance_type"] = instance
    paths = make_opt_ml(tmp_path, {}, {}, hosts=["algo-1", "algo-2"], **extra)
    resources = read_resources(paths)
    env = distributed_env(resources, {"PATH": "/usr/bin"})
    assert env == {"PATH": "/usr/bin", "NCCL_SOCKET_IFNAME": "eth0", **expected}
    # The job's own Environment wins over the defaults.
    assert (
        distributed_env(resources, {"NCCL_SOCKET_IFNAME": "ens5"})["NCCL_SOCKET_IFNAME"] == "ens5"
    )
