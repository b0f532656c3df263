"""The trained-model artifact: a self-sufficient Hugging Face model folder plus ``intentkit.json``.

Layout: ``config.json`` (with ``id2label``/``label2id``), ``model.safetensors``, tokenizer files,
``intentkit.json`` and a ``README.md`` model card. ``transformers.pipeline`` loads it unchanged.

``intentkit.json`` keys (all optional except ``format_version``):
``format_version``, ``intentkit_version``, ``train_config`` (resolved TrainConfig), ``data``
(fingerprint, path, label counts), ``max_length``, ``metrics`` (best validation metrics),
``calibration`` (``temperature``, ``threshold``, ``reject_label``, ``oos_label``, ``rule``,
``oos_scorer``, ``oos_threshold``, ``oos_platt``, ...), ``oos_stats`` (what
``oos_stats.safetensors`` holds, when the out-of-scope scorer reads features),
``versions`` (torch, transformers, python), ``created``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from intentkit.errors import ModelError

META_FILE = "intentkit.json"
FORMAT_VERSION = 1
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "spiece.model")


def check_artifact_dir(path: str | Path, *, flag: str = "MODEL_DIR") -> Path:
    """Validate an artifact folder; raise one ModelError listing every missing file and the fix."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{flag} {path}: no such folder; train one with `intentkit train`")
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        missing.append("model.safetensors")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        missing.append("tokenizer files (tokenizer.json or vocab.txt)")
    if not (path / META_FILE).is_file():
        missing.append(META_FILE)
    if missing:
        raise ModelError(
            f"{flag} {path} is not a complete intentkit model: missing {', '.join(missing)}; "
            "retrain with `intentkit train --out DIR` (or resume it with --resume)"
        )
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read ``intentkit.json`` from an artifact folder ({} if absent)."""
    f = Path(path) / META_FILE
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{f} is not valid JSON ({exc}); retrain or restore it") from exc


def labels_of(id2label: Mapping[Any, Any]) -> list[str]:
    """Class names in id order from a model config's ``id2label`` (int keys, or the str keys
    ``config.json`` stores); the one place a label list is built from it."""
    by_id = {int(k): str(v) for k, v in id2label.items()}
    return [by_id[i] for i in range(len(by_id))]


def served_max_length(config: Any, meta: dict[str, Any]) -> int:
    """Tokens per text at inference: the trained ``max_length`` from ``intentkit.json``, else the
    model's position limit capped at 512."""
    limit = getattr(config, "max_position_embeddings", 512) or 512
    return int(meta.get("max_length") or min(limit, 512))


def library_versions() -> dict[str, str]:
    """Versions of the libraries an artifact depends on, for reproducibility."""
    import platform

    import torch
    import transformers

    from intentkit import __version__

    return {
        "intentkit": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def write_artifact(
    out: str | Path,
    *,
    model: Any,
    tokenizer: Any,
    meta: dict[str, Any],
    model_card: str,
    files: dict[str, bytes] | None = None,
) -> Path:
    """Write the artifact files into ``out`` so readers never see a half-written model.

    Everything is first saved into a temp folder inside ``out`` (same filesystem), then moved
    to the top level with ``os.replace``. ``intentkit.json`` is removed first and moved in last:
    :func:`check_artifact_dir` requires it, so a crash mid-move leaves a folder that is reported
    as incomplete, never a mix that loads. Other entries of ``out`` (``checkpoints/``) stay.
    ``files`` maps extra file names to their bytes (``oos_stats.safetensors``); they move in
    with the rest.
    """
    import os
    import shutil
    import tempfile

    from intentkit.fsutil import atomic_write_json, atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".artifact.", suffix=".partial", dir=out))
    try:
        model.save_pretrained(tmp)  # safetensors (transformers 5 writes no pickle weights)
        tokenizer.save_pretrained(tmp)
        atomic_write_text(tmp / "README.md", model_card)
        for name, data in (files or {}).items():
            (tmp / name).write_bytes(data)
        atomic_write_json(tmp / META_FILE, {"format_version": FORMAT_VERSION, **meta})
        # Some writers (safetensors) leave 0600 files; an artifact must be readable by a serving
        # container that runs as another user, so give every file plain open()'s mode.
        mask = os.umask(0o022)
        os.umask(mask)
        for f in tmp.rglob("*"):
            os.chmod(f, (0o777 if f.is_dir() else 0o666) & ~mask)
        (out / META_FILE).unlink(missing_ok=True)
        names = sorted(p.name for p in tmp.iterdir() if p.name != META_FILE)
        for name in names:
            target = out / name
            if target.is_dir() and not (tmp / name).is_dir():
                shutil.rmtree(target)
            os.replace(tmp / name, target)
        os.replace(tmp / META_FILE, out / META_FILE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
