"""``train --target sagemaker --image huggingface``: intentkit shipped as the job's source.

The Hugging Face training image runs the SageMaker training toolkit, which takes user code the
way the SageMaker Python SDK's framework estimators send it: a ``sourcedir.tar.gz`` in S3
named by the hyperparameter ``sagemaker_submit_directory``, the script to run named by
``sagemaker_program`` (both values JSON-encoded, as the SDK writes them; the toolkit's
``environment.read_hyperparameters`` decodes them). The archive holds:

* ``intentkit_train.py``: :mod:`intentkit.sagemaker.image.hf_train_entry`;
* ``intentkit/``: this package's own files, so the job runs the intentkit that built the request;
* ``requirements.txt``: intentkit's runtime requirements (its distribution metadata, extras
  left out), which the toolkit pip-installs before the script runs.

The images up to transformers 4.56 ship transformers 4.x and intentkit needs 5.x (the Trainer
arguments it uses were renamed in 5.0), so ``transformers>=5.0`` in ``requirements.txt``
upgrades it in the job (pure-Python wheels plus tokenizers: seconds); the transformers 5 image
needs nothing. PyTorch is never replaced: :mod:`intentkit.sagemaker.hf_images` refuses images
older than intentkit's ``torch>=2.6``.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from intentkit.errors import ConfigError
from intentkit.fsutil import atomic_open

#: The script the toolkit runs (``sagemaker_program``).
PROGRAM = "intentkit_train.py"
ENTRY = Path(__file__).parent / "image" / "hf_train_entry.py"
PACKAGE = Path(__file__).parents[1]  #: the ``intentkit`` package folder
ARCHIVE = "sourcedir.tar.gz"
#: Never shipped: bytecode (built for this Python, not the image's) and editors' temp files.
_SKIP_DIRS = ("__pycache__",)
_SKIP_SUFFIXES = (".pyc", ".pyo", ".tmp", ".swp")


def requirements() -> list[str]:
    """intentkit's runtime requirements (``pip install intentkit``, no extras), as declared."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    try:
        declared = requires("intentkit") or []
    except PackageNotFoundError:
        raise ConfigError(
            "--image huggingface ships intentkit's requirements, read from its installed "
            "metadata: install intentkit (pip install -e .) and run again"
        ) from None
    # A requirement with an `extra == "..."` marker belongs to an extra: false without one.
    return [r for r in declared if not (m := Requirement(r).marker) or m.evaluate({"extra": ""})]


def package_files() -> list[Path]:
    """The package's files to ship (sources and data: presets, bundled sets, templates)."""
    return sorted(
        p
        for p in PACKAGE.rglob("*")
        if p.is_file()
        and not any(part in _SKIP_DIRS for part in p.relative_to(PACKAGE).parts)
        and not p.name.endswith(_SKIP_SUFFIXES)
    )


def pack_source_dir(dest: Path) -> Path:
    """Write ``dest`` (a ``sourcedir.tar.gz``): entry script, requirements, ``intentkit/``.

    Written atomically: a failure leaves no partial archive.
    """
    from intentkit.sagemaker.pack import _add_bytes  # root-owned, world-readable members

    reqs = "".join(line + "\n" for line in requirements())
    now = int(time.time())
    with atomic_open(dest) as fh, tarfile.open(fileobj=fh, mode="w:gz", compresslevel=6) as tar:
        _add_bytes(tar, ENTRY.read_bytes(), PROGRAM, now)
        _add_bytes(tar, reqs.encode("utf-8"), "requirements.txt", now)
        for path in package_files():
            name = f"intentkit/{path.relative_to(PACKAGE).as_posix()}"
            _add_bytes(tar, path.read_bytes(), name, now)
    return dest


def source_hyperparameters(submit_uri: str, region: str, job: str) -> dict[str, str]:
    """The ``sagemaker_*`` hyperparameters the training toolkit reads, JSON-encoded as the SDK
    writes them (``src/sagemaker_training/params.py`` in aws/sagemaker-training-toolkit names
    them). intentkit's own parser ignores every ``sagemaker_*`` key."""
    values: dict[str, Any] = {
        "sagemaker_program": PROGRAM,
        "sagemaker_submit_directory": submit_uri,
        "sagemaker_region": region,
        "sagemaker_job_name": job,
        "sagemaker_container_log_level": 20,  # logging.INFO, the SDK's default
    }
    return {key: json.dumps(value) for key, value in values.items()}


def ship_source_dir(aws: Any, bucket: str, prefix: str, job: str) -> dict[str, str]:
    """Pack and upload ``sourcedir.tar.gz`` under ``s3://bucket/prefix/``; return the
    hyperparameters that point the training toolkit at it."""
    with tempfile.TemporaryDirectory(prefix="intentkit-source-") as tmp:
        archive = pack_source_dir(Path(tmp) / ARCHIVE)
        uri = aws.upload(archive, bucket, f"{prefix}/{ARCHIVE}")
    return source_hyperparameters(uri, aws.region, job)
