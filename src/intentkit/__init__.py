"""intentkit: fine-tune, evaluate and serve intent classifiers.

The Python API mirrors the CLI and is imported lazily, so ``import intentkit`` is cheap and has
no side effects::

    import intentkit
    intentkit.prepare("clinc150-travel", out="data")
    intentkit.train(data="data", model="minilm", out="model", preset="cpu-fast")
    intentkit.evaluate("model", data="data")
    intentkit.load("model").predict(["what time is my flight ?"])
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {
    "prepare": ("intentkit.data.prepare", "prepare"),
    "inspect": ("intentkit.data.inspect", "inspect"),
    "train": ("intentkit.training.train", "train"),
    "evaluate": ("intentkit.evaluation.evaluate", "evaluate"),
    "load": ("intentkit.export.loader", "load_predictor"),
    "Predictor": ("intentkit.inference.predictor", "Predictor"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'intentkit' has no attribute {name!r}")
