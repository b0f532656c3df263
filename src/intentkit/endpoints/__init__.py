"""Targets: one interface (:class:`~intentkit.endpoints.base.Target`) that ``train``,
``deploy``, ``predict`` and ``delete`` dispatch through, one module per target (``local``: this
machine; ``sagemaker``: SageMaker jobs and real-time endpoints), one registry of endpoint records
for all of them. ``--target`` is checked in one place, :func:`check_target`.

Targets are imported lazily by name, so ``intentkit endpoints`` never imports boto3 unless a
SageMaker record is there.
"""

from __future__ import annotations

import importlib
from typing import Any

from intentkit.endpoints.registry import Registry
from intentkit.errors import ConfigError

#: ``--target`` value -> ``module:class`` implementing it.
TARGETS = {
    "local": "intentkit.endpoints.local:LocalTarget",
    "sagemaker": "intentkit.sagemaker.endpoint:SageMakerTarget",
}


def check_target(kind: str) -> str:
    """``kind`` if it names a target, else the one error every command gives for ``--target``."""
    if kind not in TARGETS:
        raise ConfigError(f"--target {kind}: unknown target; use {' or '.join(TARGETS)}")
    return kind


def get_target(kind: str, registry: Registry) -> Any:
    """The :class:`~intentkit.endpoints.base.Target` for ``--target kind``."""
    module, cls = TARGETS[check_target(kind)].split(":")
    return getattr(importlib.import_module(module), cls)(registry)


def target_of(record: dict[str, Any], registry: Registry) -> Any:
    """The target that owns a registry record (``local`` for records without a target)."""
    return get_target(record.get("target", "local"), registry)


def lookup(registry: Registry, name: str) -> dict[str, Any]:
    """The record of endpoint ``name``, or a one-line error listing the known names."""
    rec = registry.get(name)
    if rec is None:
        known = ", ".join(sorted(registry.all())) or "none"
        raise ConfigError(f"no endpoint named {name!r} (known: {known}); see `intentkit endpoints`")
    return rec


def prune(registry: Registry) -> list[str]:
    """Drop records their target knows to be gone without a network call; their names."""
    return registry.prune(lambda rec: target_of(rec, registry).is_stale(rec))
