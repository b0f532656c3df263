"""The interface every target implements: train, deploy, status, predict, delete.

A target is where an endpoint runs: ``local`` (a detached ``intentkit serve`` process on this
machine) or ``sagemaker`` (a SageMaker real-time endpoint). All of them share one registry of
records (:mod:`intentkit.endpoints.registry`), so ``intentkit endpoints``, ``predict --endpoint``
and ``delete`` work the same whatever the target; a record says which target owns it in its
``target`` field. A new target (say, a Kubernetes deployment) is one new module with a subclass
of :class:`Target`, listed in :data:`intentkit.endpoints.TARGETS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from intentkit.endpoints.registry import Registry
from intentkit.errors import ConfigError

#: ``texts -> [{"predicted_class", "confidence"}, ...]``, one answer per text, in order.
Invoke = Callable[[list[str]], list[dict[str, Any]]]


def check_name(name: str) -> str:
    """Validate an endpoint name (letters, digits, '-', '_', '.'; SageMaker allows fewer)."""
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '-', '_' or '.'")
    return name


class Target(ABC):
    """One place endpoints run. Instances are cheap; nothing is contacted until a method runs."""

    #: The ``--target`` value and the ``target`` field of this target's registry records.
    kind: ClassVar[str]

    def __init__(self, registry: Registry) -> None:
        """Use ``registry`` for the records of this target's endpoints."""
        self.registry = registry

    @abstractmethod
    def deploy(self, name: str, model_dir: Path, options: Any) -> dict[str, Any]:
        """Start endpoint ``name`` serving ``model_dir``; wait until it answers; record it.

        ``options`` is the target's own options object (what its ``deploy`` flags mean). A
        failure at any step removes what this call created and raises a one-line error.
        Returns the registry record.
        """

    @abstractmethod
    def status(self, record: dict[str, Any]) -> str:
        """Live status of a recorded endpoint (``ready``, ``loading``, ``gone``...)."""

    @abstractmethod
    def invoker(self, record: dict[str, Any], *, api_key: str | None = None) -> Invoke:
        """A callable that sends texts to the endpoint and returns the reference's answers."""

    @abstractmethod
    def delete(self, record: dict[str, Any], *, timeout: float | None = None) -> str:
        """Remove the endpoint and everything deploy created, then its record.

        ``timeout``: seconds to wait for the target (None: the target's own default).

        Returns how it ended (``stopped``, ``killed``, ``deleted``, ``gone``...); something
        already gone is not an error.
        """

    def train(self, data: Path, out: Path, options: dict[str, Any]) -> Path | None:
        """Train on the prepared dataset ``data`` and write the model folder to ``out``.

        ``options``: the target's own keyword arguments (the training flags, plus the target's
        settings). Returns the model folder (None where nothing was written here, e.g. a job
        left running with ``--no-wait``).
        """
        raise ConfigError(f"--target {self.kind}: training is not available there")

    def transform(
        self, model: Any, source: str, output: str | None, options: dict[str, Any]
    ) -> Any:
        """Score every text of the file ``source`` with ``model`` into ``output``.

        ``model`` is what the target runs (local: an artifact folder or an endpoint's invoker;
        sagemaker: a SageMaker model name or ``s3://.../model.tar.gz``). ``options``: the
        target's own keyword arguments. Returns the target's summary of the run.
        """
        raise ConfigError(f"--target {self.kind}: batch prediction is not available there")

    def is_stale(self, record: dict[str, Any]) -> bool:
        """True when the record can be dropped without asking anyone (e.g. a dead local pid)."""
        return False
