"""``hyperparameters.json`` -> typed ``intentkit train`` and ``data prepare`` options.

SageMaker writes every hyperparameter as a string (``{"epochs": "3"}``); the framework
estimators of the SageMaker SDK even JSON-encode them first (``{"model": "\\"minilm\\""}``).
Each key is the ``intentkit train`` option of the same name (``batch-size`` or ``batch_size``)
and its string is converted to the TrainConfig field's type, so a typo or a bad value fails the
job at once with a one-line reason instead of after the data is prepared.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from intentkit.config import DataConfig, TrainConfig
from intentkit.errors import ConfigError

log = logging.getLogger(__name__)
#: DataConfig options that make sense for a raw-data channel (``data prepare`` flags).
#: ``val-size`` is deliberately not one: it is TrainConfig's (validation carved from train
#: at training time), which works the same for raw and prepared channels.
DATA_KEYS = ("text_column", "label_column", "test_size", "min_per_label")
#: Keys fed to both configs: one seed makes the split and the training reproducible.
SHARED_KEYS = ("seed",)
#: Keys that are SageMaker's, not ours, so they are ignored: the SDK injects sagemaker_program,
#: sagemaker_region, sagemaker_job_name, ... for its script-mode containers, and SageMaker
#: itself reserves keys starting with "_": a hyperparameter tuning job adds
#: `_tuning_objective_metric` to every training job it starts (the SDK removes it again as the
#: "hyperparameter reserved by SageMaker for tuning jobs" in ``HyperparameterTuner`` of
#: https://github.com/aws/sagemaker-python-sdk/blob/master/src/sagemaker/tuner.py), and built-in
#: algorithms read `_kvstore`, `_num_gpus`, ... No intentkit option starts with "_".
IGNORED_PREFIXES = ("sagemaker_", "_")
_NONE = ("", "none", "null")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


@dataclass(frozen=True)
class Hyperparameters:
    """The job's options, typed and split by the stage that uses them."""

    train: dict[str, Any] = field(default_factory=dict)  #: TrainConfig overrides
    data: dict[str, Any] = field(default_factory=dict)  #: DataConfig overrides (raw channels)
    preset: str | None = None  #: ``--preset``: its train and data sections apply

    def data_config(self) -> DataConfig:
        """The DataConfig for a raw channel: defaults < the preset's data section < keys."""
        from intentkit.config import build, load_preset

        section = load_preset(self.preset).get("data") if self.preset else None
        return build(DataConfig, section, **self.data)


def _field_types(cls: type) -> dict[str, Any]:
    # config.py uses `from __future__ import annotations`: resolve the strings to real types.
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def known_keys() -> list[str]:
    """Every accepted key, dash-spelled (underscores are accepted too)."""
    names = [*_field_types(TrainConfig), *DATA_KEYS, "preset"]
    return sorted(n.replace("_", "-") for n in names)


def _unwrap_optional(kind: Any) -> tuple[Any, bool]:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(kind))
    return kind, False


def convert(key: str, value: Any, kind: Any) -> Any:
    """Convert one hyperparameter value (a string, or already JSON-typed) to ``kind``."""
    base, optional = _unwrap_optional(kind)
    shown = f"hyperparameter {key!r}: {value!r}"
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        try:  # the SDK's JSON-encoded string: "\"minilm\"" -> "minilm"
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in _NONE):
        if optional:
            return None
        raise ConfigError(f"{shown} cannot be empty; give a value or remove the key")
    text = value.strip() if isinstance(value, str) else value
    if base is bool:
        if isinstance(text, bool):
            return text
        if str(text).lower() in _TRUE + _FALSE:
            return str(text).lower() in _TRUE
        raise ConfigError(f'{shown} is not a boolean; pass "true" or "false"')
    if base is int:
        try:
            if isinstance(text, bool) or (isinstance(text, float) and not text.is_integer()):
                raise ValueError
            return int(text)
        except (TypeError, ValueError):
            raise ConfigError(f'{shown} is not an integer; pass e.g. "16"') from None
    if base is float:
        try:
            if isinstance(text, bool):
                raise ValueError
            number = float(text)
        except (TypeError, ValueError):
            raise ConfigError(f'{shown} is not a number; pass e.g. "3" or "5e-5"') from None
        if not math.isfinite(number):
            raise ConfigError(f'{shown} is not a finite number; pass e.g. "3" or "5e-5"')
        return number
    if typing.get_origin(base) is dict:
        try:
            parsed = json.loads(text) if isinstance(text, str) else text
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ConfigError(f"{shown} is not a JSON object; pass e.g. '{{\"k\": 1}}'")
        return parsed
    if isinstance(text, (dict, list)):
        raise ConfigError(f"{shown} must be a string")
    return str(text)


def parse_hyperparameters(raw: Any, *, where: str = "hyperparameters.json") -> Hyperparameters:
    """Type and sort a ``hyperparameters.json`` object; one ConfigError per bad key, named."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a JSON object of name -> value")
    train_types = _field_types(TrainConfig)
    data_types = _field_types(DataConfig)
    seen: dict[str, str] = {}
    train: dict[str, Any] = {}
    data: dict[str, Any] = {}
    preset = None
    for key, value in raw.items():
        if key.startswith(IGNORED_PREFIXES):
            log.info("hyperparameter %r is SageMaker's; not used", key)
            continue
        name = key.replace("-", "_")
        if name in seen:
            raise ConfigError(f"{where}: {seen[name]!r} and {key!r} are the same key; keep one")
        seen[name] = key
        if name == "preset":
            preset = convert(key, value, str | None)
        elif name in DATA_KEYS:
            data[name] = convert(key, value, data_types[name])
        elif name in train_types:
            train[name] = convert(key, value, train_types[name])
            if name in SHARED_KEYS:
                data[name] = train[name]
        else:
            raise ConfigError(
                f"{where}: unknown hyperparameter {key!r}; known keys are "
                f"{', '.join(known_keys())} (dashes or underscores)"
            )
    return Hyperparameters(train=train, data=data, preset=preset)


def check_train_config(hp: Hyperparameters, *, where: str = "hyperparameters.json") -> TrainConfig:
    """Build the TrainConfig now (defaults < preset < keys) so bad values fail before any work."""
    from intentkit.config import build, load_preset

    try:
        section = load_preset(hp.preset).get("train") if hp.preset else None
        return build(TrainConfig, section, **hp.train)
    except ConfigError as exc:
        # The config's messages name CLI flags (--epochs): the same names as the keys here.
        raise ConfigError(f"{where}: {exc}") from None
