"""``--image huggingface``: the region's Hugging Face image, intentkit shipped as job source.

The image table is data from the SageMaker Python SDK; the training and deploy requests go to
the stand-in over moto; the entry script trains for real over a temporary /opt/ml tree, from
the very ``sourcedir.tar.gz`` the request pointed at.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aws_helpers import ROLE
from intentkit.cli import main
from intentkit.errors import ConfigError
from intentkit.sagemaker import hf_images
from intentkit.sagemaker.image.hf_inference import choose_device
from intentkit.sagemaker.source_dir import PROGRAM, requirements
from serve_helpers import make_artifact

REGION = "us-east-1"
BUCKET = "intentkit-hf-bucket"
TRAIN_URI = (
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:"
    "2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04"
)


def _client(service: str) -> Any:
    import boto3

    return boto3.client(service, region_name=REGION)  # AWS_ENDPOINT_URL: the stand-in


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------- image table
def test_image_table_parses_and_says_where_it_comes_from() -> None:
    table = hf_images.load_table()
    assert re.search(
        r"sagemaker-python-sdk/blob/[0-9a-f]{40}/.*huggingface\.json$", table["source"]
    )
    assert table["training"]["repository"] == "huggingface-pytorch-training"
    assert table["inference"]["repository"] == "huggingface-pytorch-inference"
    for scope in hf_images.SCOPES:
        versions = table[scope]["versions"]
        assert "4.48.0" in versions and len(versions) >= 4
        for version, entry in versions.items():
            assert re.fullmatch(r"\d+\.\d+\.\d+", version) and re.fullmatch(
                r"\d+\.\d+\.\d+", entry["pytorch"]
            )
            assert re.fullmatch(r"py3\d+", entry["py"])
            assert set(entry["container"]) <= {"cpu", "gpu"} and "gpu" in entry["container"]
            assert REGION in entry["registries"]
            assert all(re.fullmatch(r"\d{12}", a) for a in entry["registries"].values())
    # Training images are GPU only; inference has both.
    assert all(set(e["container"]) == {"gpu"} for e in table["training"]["versions"].values())
    assert all("cpu" in e["container"] for e in table["inference"]["versions"].values())


@pytest.mark.parametrize(
    ("scope", "region", "instance", "family", "version", "uri"),
    [
        ("training", REGION, "ml.g5.xlarge", "modernbert", None, TRAIN_URI),
        (
            "training", "cn-north-1", "ml.p4d.24xlarge", "bert", "4.56",
            "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/huggingface-pytorch-training:"
            "2.8.0-transformers4.56.2-gpu-py312-cu129-ubuntu22.04",
        ),
        (
            "inference", "us-gov-west-1", "ml.c7i.large", "modernbert", None,
            "442386744353.dkr.ecr.us-gov-west-1.amazonaws.com/huggingface-pytorch-inference:"
            "2.6.0-transformers5.5.3-cpu-py312-ubuntu22.04",
        ),
        (
            "inference", "eu-south-1", "ml.g5.xlarge", "modernbert", "4.48.0",
            "692866216735.dkr.ecr.eu-south-1.amazonaws.com/huggingface-pytorch-inference:"
            "2.3.0-transformers4.48.0-gpu-py311-cu121-ubuntu22.04",
        ),
        (  # BERT-family models run on the older image ModernBERT cannot
            "inference", REGION, "ml.c5.large", "bert", "4.37",
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:"
            "2.1.0-transformers4.37.0-cpu-py310-ubuntu22.04",
        ),
    ],
)  # fmt: skip
def test_resolve_picks_account_host_processor_and_version(
    scope: str, region: str, instance: str, family: str, version: str | None, uri: str
) -> None:
    got = hf_images.resolve_hf_image(
        scope, region=region, instance_type=instance, family=family, version=version
    )
    assert got.uri == uri


def _without_new_images(region: str) -> dict[str, Any]:
    """The real table, with ``region`` left only in the images older than 4.48."""
    table = copy.deepcopy(hf_images.load_table())
    for entry in table["inference"]["versions"].values():
        entry["registries"] = {r: a for r, a in entry["registries"].items() if r != region}
    table["inference"]["versions"]["4.37.0"]["registries"][region] = "123456789012"
    return table


@pytest.mark.parametrize(
    ("scope", "kwargs", "needle"),
    [
        ("inference", {"version": "4.37"}, "--image-version 4.37: too old (modernbert needs "),
        ("training", {"version": "4.49.0"}, "PyTorch >= 2.6 and that image has 2.5.1"),
        ("training", {"version": "4.46"}, "modernbert needs transformers >= 4.48.0"),
        ("inference", {"version": "4.99"}, "--image-version 4.99: no such Hugging Face image"),
        ("training", {"instance_type": "ml.c7i.xlarge"}, "training images are GPU only"),
        ("inference", {"instance_type": "ml.inf2.xlarge"}, "Neuron"),
        ("training", {"region": "eu-central-2"}, "no Hugging Face PyTorch training image"),
        (
            "inference",
            {"region": "me-south-1", "table": _without_new_images("me-south-1")},
            "--region me-south-1: its newest Hugging Face inference image (transformers 4.37.0)"
            " is too old (modernbert needs transformers >= 4.48.0)",
        ),
    ],
)
def test_too_old_or_impossible_images_are_refused_in_one_line(
    scope: str, kwargs: dict[str, Any], needle: str
) -> None:
    args = {"region": REGION, "instance_type": "ml.g5.xlarge", "family": "modernbert", **kwargs}
    with pytest.raises(ConfigError) as info:
        hf_images.resolve_hf_image(scope, **args)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_model_family(kw_model: Path) -> None:
    assert hf_images.model_family(str(kw_model)) == "modernbert"  # from its config.json
    assert hf_images.model_family("modernbert-base") == "modernbert"
    assert hf_images.model_family("answerdotai/ModernBERT-large") == "modernbert"
    assert hf_images.model_family("minilm") == "bert"


# ------------------------------------------------------------------------------- training
def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--data", str(data), "--out", str(out), "--target", "sagemaker",
        "--role", ROLE, "--bucket", BUCKET, "--region", REGION, "--image", "huggingface",
        "--model", "modernbert-base", *extra,
    ]  # fmt: skip


def _source_archive(job: dict[str, Any]) -> bytes:
    uri = json.loads(job["HyperParameters"]["sagemaker_submit_directory"])
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return _client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def test_train_on_the_hf_image_ships_intentkit_as_source(
    aws: str, kw_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _train_args(kw_data, tmp_path / "model", "--job-name", "hf-a", "--no-wait")
    assert main([*args, "--epochs", "2"]) == 0
    assert "hf-a" in capsys.readouterr().out

    job = _client("sagemaker").describe_training_job(TrainingJobName="hf-a")
    assert job["AlgorithmSpecification"]["TrainingImage"] == TRAIN_URI
    hp = job["HyperParameters"]
    assert hp["epochs"] == "2.0" and hp["model"] == "modernbert-base"  # intentkit's own keys
    # The training toolkit's keys, JSON-encoded as the SageMaker SDK writes them.
    source = f"s3://{BUCKET}/intentkit/hf-a/source/sourcedir.tar.gz"
    assert hp["sagemaker_program"] == json.dumps(PROGRAM) == '"intentkit_train.py"'
    assert hp["sagemaker_submit_directory"] == json.dumps(source)
    assert hp["sagemaker_region"] == json.dumps(REGION)
    assert hp["sagemaker_job_name"] == json.dumps("hf-a")

    with tarfile.open(fileobj=io.BytesIO(_source_archive(job))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        reqs = tar.extractfile("requirements.txt").read().decode().splitlines()
        entry = tar.extractfile(PROGRAM).read()
    here = Path(__file__).resolve().parents[1] / "src" / "intentkit"
    assert entry == (here / "sagemaker" / "image" / "hf_train_entry.py").read_bytes()
    shipped = ("__init__.py", "sagemaker/image/training.py", "sagemaker/hf_images.json")
    for name in (*shipped, "presets/cpu-fast.yaml"):
        assert f"intentkit/{name}" in members
    assert not [n for n in members if "__pycache__" in n or n.endswith(".pyc")]
    assert all(m.mode == 0o644 and m.uname == "" for m in members.values())
    # intentkit's own requirements, no extras: transformers 5 replaces the image's 4.x.
    assert reqs == requirements() and "transformers>=5.0" in reqs and "torch>=2.6" in reqs
    assert not any("boto3" in r or "fastapi" in r for r in reqs)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--image-version", "4.46"], "--image-version 4.46: too old"),
        (["--instance-type", "ml.c5.xlarge"], "--instance-type ml.c5.xlarge"),
        (["--image", "acct.dkr.ecr.x/intentkit:1", "--image-version", "4.56"], "--image-version"),
        (["--region", "eu-central-2"], "--region eu-central-2"),
    ],
)
def test_train_refuses_before_anything_is_created(
    aws: str,
    kw_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    needle: str,
) -> None:
    assert main(_train_args(kw_data, tmp_path / "model", *extra)) == 2
    assert needle in _one_line_error(capsys)
    assert _client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []
    assert _client("s3").list_buckets()["Buckets"] == []


def test_entry_script_trains_over_opt_ml_from_the_shipped_source(
    aws: str, kw_data: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The toolkit's side, for real: extract the uploaded archive into code/, write the job's
    hyperparameters.json and channel as SageMaker does, run the script as the toolkit runs it
    (its SM_* variables, the hyperparameters repeated as arguments), with nothing on
    PYTHONPATH: the intentkit that trains must be the shipped one."""
    args = _train_args(kw_data, tmp_path / "unused", "--job-name", "hf-b", "--no-wait")
    assert main([*args, "--epochs", "1", "--batch-size", "8", "--no-calibrate"]) == 0
    job = _client("sagemaker").describe_training_job(TrainingJobName="hf-b")
    root, code = tmp_path / "opt" / "ml", tmp_path / "opt" / "ml" / "code"
    with tarfile.open(fileobj=io.BytesIO(_source_archive(job))) as tar:
        tar.extractall(code, filter="data")
    hp = {**job["HyperParameters"], "model": str(tiny_model_dir)}  # no hub here
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hp))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
    )
    channel = root / "input" / "data" / "train"
    channel.mkdir(parents=True)
    for path in (p for p in kw_data.iterdir() if p.is_file()):
        (channel / path.name).write_bytes(path.read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "INTENTKIT_"))}
    env |= {
        "SM_MODEL_DIR": str(root / "model"),
        "SM_CHANNEL_TRAIN": str(channel),
        "SM_HPS": json.dumps(hp),
        "SM_CURRENT_HOST": "algo-1",
        "SM_HOSTS": '["algo-1"]',
    }
    argv = [x for k, v in sorted(hp.items()) for x in (f"--{k}", v)]
    # Which intentkit ran, said at exit; then the script, as `python intentkit_train.py ...`.
    run = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('FROM', sys.modules['intentkit'].__file__))\n"
        f"sys.argv = {[PROGRAM, *argv]!r}\n"
        f"runpy.run_path({PROGRAM!r}, run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", run], cwd=code, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"FROM {code / 'intentkit' / '__init__.py'}" in proc.stdout
    assert f"model written to {root / 'model'}" in proc.stdout
    from intentkit.artifact import check_artifact_dir, read_meta

    check_artifact_dir(root / "model")
    assert read_meta(root / "model")["train_config"]["epochs"] == 1.0  # the job's own value
    assert not (root / "output" / "failure").exists()


# -------------------------------------------------------------------------------- deploy
def test_deploy_on_the_hf_image_resolves_the_inference_image(
    aws: str, kw_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from intentkit.endpoints.registry import Registry

    state = tmp_path / "state"
    base = ["deploy", str(kw_model), "--name", "hf-e", "--target", "sagemaker", "--role", ROLE]
    base += ["--image", "huggingface", "--region", REGION, "--bucket", BUCKET]
    base += ["--state-dir", str(state), "--instance-type", "ml.c5.large"]
    # ModernBERT on the transformers 4.37 image: refused before anything is created.
    assert main([*base, "--image-version", "4.37"]) == 2
    assert "--image-version 4.37: too old (modernbert" in _one_line_error(capsys)
    assert _client("s3").list_buckets()["Buckets"] == []
    assert _client("sagemaker").list_models()["Models"] == []

    assert main(base) == 0
    capsys.readouterr()
    [model] = _client("sagemaker").list_models()["Models"]
    container = _client("sagemaker").describe_model(ModelName=model["ModelName"])
    image = container["PrimaryContainer"]["Image"]
    assert image == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:"
        "2.6.0-transformers5.5.3-cpu-py312-ubuntu22.04"
    )
    assert Registry(state).get("hf-e")["image"] == image
    uri = container["PrimaryContainer"]["ModelDataUrl"]
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    archive = _client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert "code/inference.py" in tar.getnames()  # the handler that image imports
    assert main(["delete", "hf-e", "--state-dir", str(state)]) == 0
    assert _client("sagemaker").list_models()["Models"] == []


# ------------------------------------------------------------------- the handler's device
@pytest.mark.parametrize(
    ("context", "gpus", "device"),
    [
        (None, 0, "cpu"),
        (SimpleNamespace(system_properties={"gpu_id": 3}), 0, "cpu"),  # CPU instance
        (None, 4, "cuda"),  # older toolkits pass no context
        (SimpleNamespace(system_properties={"gpu_id": 0}), 4, "cuda:0"),
        (SimpleNamespace(system_properties={"gpu_id": "2"}), 4, "cuda:2"),
        (SimpleNamespace(system_properties={"gpu_id": 5}), 4, "cuda:1"),
        (SimpleNamespace(system_properties={}), 2, "cuda"),
    ],
)
def test_each_worker_uses_the_gpu_it_is_given(context: Any, gpus: int, device: str) -> None:
    assert choose_device(context, gpus) == device


def test_model_fn_takes_the_toolkits_context(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The toolkit passes its context only to a model_fn with two parameters."""
    from inspect import signature

    from intentkit.sagemaker.image import hf_inference

    assert len(signature(hf_inference.model_fn).parameters) == 2
    model_dir = make_artifact(tiny_model_dir, tmp_path / "m")
    loaded = hf_inference.model_fn(str(model_dir), SimpleNamespace(system_properties={"gpu_id": 1}))
    assert loaded["device"] == "cpu"  # this machine has no GPU: the gpu id does not apply
