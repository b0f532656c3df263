"""The ``/opt/ml`` tree SageMaker mounts into a container, and the JSON files it writes there."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intentkit.errors import ConfigError

#: SageMaker's fixed mount point; ``$INTENTKIT_OPT_ML`` moves it (tests, local runs).
DEFAULT_ROOT = "/opt/ml"
ROOT_ENV = "INTENTKIT_OPT_ML"


@dataclass(frozen=True)
class OptMl:
    """Every path of the container contract, derived from one root."""

    root: Path

    @property
    def hyperparameters(self) -> Path:
        """``input/config/hyperparameters.json``: the job's hyperparameters, all JSON strings."""
        return self.root / "input" / "config" / "hyperparameters.json"

    @property
    def resource_config(self) -> Path:
        """``input/config/resourceconfig.json``: ``hosts`` and ``current_host``."""
        return self.root / "input" / "config" / "resourceconfig.json"

    @property
    def input_data_config(self) -> Path:
        """``input/config/inputdataconfig.json``: one entry per data channel."""
        return self.root / "input" / "config" / "inputdataconfig.json"

    @property
    def data(self) -> Path:
        """``input/data``: one folder per channel."""
        return self.root / "input" / "data"

    @property
    def prepared(self) -> Path:
        """``input/prepared``: raw channels prepared on the fly.

        On SageMaker this sits on the ML storage volume sized for the input data (``/tmp`` is
        the container's small root disk), and it is neither shipped with the model
        (``model/``), synced to S3 (``checkpoints/``) nor uploaded as output (``output/``).
        """
        return self.root / "input" / "prepared"

    @property
    def model(self) -> Path:
        """``model``: the artifact; SageMaker tars it to S3 after training, mounts it to serve."""
        return self.root / "model"

    @property
    def checkpoints(self) -> Path:
        """``checkpoints``: synced to and from S3 (``checkpoint_s3_uri``) for spot training."""
        return self.root / "checkpoints"

    @property
    def failure(self) -> Path:
        """``output/failure``: its text becomes the training job's ``FailureReason``."""
        return self.root / "output" / "failure"


def opt_ml_from_env() -> OptMl:
    """The root from ``$INTENTKIT_OPT_ML`` or ``/opt/ml``; call once when a command starts."""
    return OptMl(Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT))


def read_json(path: Path, *, required: bool = False) -> Any:
    """Parse a SageMaker config file; None when it is absent and not ``required``."""
    if not path.is_file():
        if required:
            raise ConfigError(f"{path}: missing; SageMaker writes it (set ${ROOT_ENV} locally)")
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); fix the file") from exc


@dataclass(frozen=True)
class Resources:
    """``resourceconfig.json``: the job's hosts and which one this container is."""

    hosts: list[str]
    current_host: str
    #: ``network_interface_name``: the interface the hosts reach each other on (NCCL's socket).
    network_interface: str | None = None
    #: ``current_instance_type``, e.g. ``ml.p4d.24xlarge`` (decides the EFA settings).
    instance_type: str | None = None

    @property
    def node_rank(self) -> int:
        """Position of this host in ``hosts`` (torchrun's ``--node_rank``)."""
        return self.hosts.index(self.current_host)


def read_resources(paths: OptMl) -> Resources:
    """Read ``resourceconfig.json``; a missing file means one host (``docker run IMAGE train``)."""
    doc = read_json(paths.resource_config)
    if doc is None:
        return Resources(hosts=["localhost"], current_host="localhost")
    if not isinstance(doc, dict):
        raise ConfigError(f"{paths.resource_config}: expected an object with hosts, current_host")
    hosts, current = doc.get("hosts"), doc.get("current_host")
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
        raise ConfigError(f"{paths.resource_config}: 'hosts' must be a non-empty list of names")
    if current not in hosts:
        raise ConfigError(
            f"{paths.resource_config}: current_host {current!r} is not in hosts {hosts}"
        )
    names = {k: doc.get(k) for k in ("network_interface_name", "current_instance_type")}
    for key, value in names.items():
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{paths.resource_config}: {key!r} must be a string")
    return Resources(
        hosts=list(hosts),
        current_host=str(current),
        network_interface=names["network_interface_name"] or None,
        instance_type=names["current_instance_type"] or None,
    )


def channel_names(paths: OptMl) -> list[str]:
    """Channel names from ``inputdataconfig.json``, else the folders under ``input/data``."""
    doc = read_json(paths.input_data_config)
    if isinstance(doc, dict):
        return sorted(doc)
    if doc is not None:
        raise ConfigError(f"{paths.input_data_config}: expected an object keyed by channel name")
    if not paths.data.is_dir():
        return []
    return sorted(p.name for p in paths.data.iterdir() if p.is_dir() and not p.name.startswith("."))
