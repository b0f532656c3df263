"""ONNX export of an artifact and an ONNX Runtime forward pass for serving on CPUs.

Why a second backend: on this project's CPU (2-core AMD EPYC VM) PyTorch's fp32 GEMM (MKL)
reaches ~210 GFLOP/s while ONNX Runtime's MLAS reaches ~460, and a ModernBERT-base forward on a
12 x 11-token batch takes 96 ms in ONNX Runtime vs 209 ms in PyTorch eager
(``bench/backend_forward.py``; bench/RESULTS.md section 4).
Exporting and quantizing are done by the libraries (``torch.onnx``, ``onnxruntime.quantization``);
this module only caches, verifies and loads their output.

Layout: ``MODEL_DIR/onnx/model.onnx`` (fp32), ``model.int8.onnx`` (int8 weights, see
:mod:`intentkit.export.quantize`) and ``export.json`` (the source fingerprint, versions, the
measured max |logit difference|, and for int8 the recipe and its measured agreement with fp32's
answers). An export is reused while the artifact's config and weights are unchanged. When
``MODEL_DIR`` is read-only the export goes to the user cache folder instead; the artifact is never
modified apart from adding ``onnx/``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from intentkit.artifact import (
    WEIGHT_FILES,
    check_artifact_dir,
    read_meta,
    served_max_length,
)
from intentkit.errors import ConfigError, ModelError
from intentkit.fsutil import atomic_write_json
from intentkit.inference.onnx_runner import OnnxRunner

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"
MANIFEST = "export.json"
OPSET = 17
#: Largest |logit difference| between ONNX Runtime fp32 and PyTorch fp32 accepted at export.
TOLERANCE = 1e-3
FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
#: Graph outputs; bumped when they change so older exports are remade. 2: ``cls`` (the last
#: layer's CLS feature, for the out-of-scope score) beside ``logits``.
GRAPH_VERSION = 2
VERIFY_MAX_LENGTH = 1024


def onnx_available() -> bool:
    """True when onnxruntime and onnx are importable (the ``onnx`` extra)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def require_onnx() -> None:
    """Raise a one-line ConfigError naming the extra to install when ONNX Runtime is missing."""
    if not onnx_available():
        raise ConfigError(
            "--backend onnx needs onnxruntime and onnx: pip install 'intentkit[onnx]' "
            "(or use --backend torch)"
        )


def fingerprint(model_dir: Path) -> dict[str, list[int]]:
    """Size and mtime of the files an export is made from; a change means re-export."""
    names = ["config.json", *WEIGHT_FILES]
    out = {}
    for name in names:
        f = model_dir / name
        if f.is_file():
            st = f.stat()
            out[name] = [st.st_size, st.st_mtime_ns]
    return out


def _writable(folder: Path) -> bool:
    target = folder if folder.exists() else folder.parent
    return os.access(target, os.W_OK)


def export_dir(model_dir: Path) -> Path:
    """Where a new export of ``model_dir`` goes: ``model_dir/onnx``, or the user cache if that
    folder cannot be written (a read-only mount such as SageMaker's /opt/ml/model)."""
    local = model_dir / ONNX_DIR
    if _writable(local):
        return local
    from platformdirs import user_cache_dir

    key = hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:16]
    return Path(user_cache_dir("intentkit")) / "onnx" / key


def _has(manifest: dict[str, Any], folder: Path, kind: str) -> bool:
    """Whether the manifest lists the ``kind`` graph and its file is there (int8: made with the
    current recipe and its agreement measured)."""
    from intentkit.export.quantize import RECIPE

    info = manifest.get("files", {}).get(kind)
    if info is None or not (folder / FILES[kind]).is_file():
        return False
    if kind == "int8":  # an int8 graph from an older recipe is remade, not served
        return (info.get("quantization") or {}).get("name") == RECIPE["name"] and bool(
            info.get("agreement")
        )
    return True


def _fresh(folder: Path, model_dir: Path, kind: str) -> Path | None:
    """The ``kind`` graph in ``folder`` if its manifest matches the artifact as it is now."""
    manifest = _read_manifest(folder)
    ok = _current(manifest, model_dir) and _has(manifest, folder, kind)
    return folder / FILES[kind] if ok else None


def _current(manifest: dict[str, Any], model_dir: Path) -> bool:
    """Whether ``manifest`` describes graphs of the artifact as it is now, with today's outputs."""
    return (
        manifest.get("source") == fingerprint(model_dir)
        and manifest.get("graph_version") == GRAPH_VERSION
    )


def _read_manifest(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / MANIFEST).read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _sample_batches(max_length: int, vocab: int, pad: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Batches that exercise dynamic batch size, length and padding (incl. the longest input)."""
    rng = np.random.default_rng(0)
    batches = []
    # The longest check is capped: a (2, 8192) fp32 forward of a long-context encoder would
    # take minutes on a CPU; intents are short and models here are served at <= 512 tokens.
    longest = min(max_length, VERIFY_MAX_LENGTH)
    for rows, width in ((1, 5), (3, min(longest, 19)), (2, longest)):
        ids = rng.integers(min(1000, vocab - 1) // 2, min(1000, vocab - 1), (rows, width))
        mask = np.ones((rows, width), dtype=np.int64)
        if rows > 1:  # the last row is padded to a third of the width
            cut = max(1, width // 3)
            mask[-1, cut:] = 0
            ids[-1, cut:] = pad
        batches.append((ids.astype(np.int64), mask))
    return batches


def _outputs_module(model: Any) -> Any:
    """Wrap a HF classifier so the traced graph has two outputs, ``logits`` and ``cls``."""
    import torch

    from intentkit.inference.features import forward_with_cls

    class LogitsAndCls(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return forward_with_cls(self.model, input_ids, attention_mask)

    return LogitsAndCls().eval()


def _torch_export(model: Any, path: Path, sample: tuple[np.ndarray, np.ndarray]) -> None:
    import warnings

    import torch

    ids, mask = (torch.from_numpy(x) for x in sample)
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter (dynamo=False) needs no onnxscript and handles HF encoders
        # with data-dependent masks; its tracer warnings are about branches that the
        # verification below checks over several shapes.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _outputs_module(model),
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits", "cls"],
            dynamic_axes={**axes, "logits": {0: "batch"}, "cls": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def _max_diff(model: Any, onnx_path: Path, batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Largest |difference| to PyTorch over both outputs, logits and CLS features."""
    import torch

    from intentkit.inference.features import forward_with_cls

    runner = OnnxRunner(onnx_path, threads=None)
    worst = 0.0
    for ids, mask in batches:
        with torch.inference_mode():
            ref = forward_with_cls(model, torch.from_numpy(ids), torch.from_numpy(mask))
        for want, got in zip(ref, runner.outputs(ids, mask), strict=True):
            worst = max(worst, float(np.abs(want.float().numpy() - got).max()))
    return worst


def export_onnx(
    model_dir: str | Path,
    *,
    int8: bool = False,
    force: bool = False,
    min_agreement: float | None = None,
    data: str | Path | None = None,
) -> Path:
    """Export ``model_dir`` to ONNX (and int8 when asked); return the requested ``.onnx`` path.

    Reused when ``export.json`` matches the artifact's current config and weights, unless
    ``force``. The fp32 graph is checked against PyTorch on batches of several sizes, lengths
    and paddings (up to the artifact's ``max_length``); a difference above ``TOLERANCE`` raises
    ModelError, so a graph that traced a shape-specific branch is never served.

    int8: the graph's answers are compared with fp32's on validation texts (``data``, else the
    artifact's recorded data folder; :func:`intentkit.export.quantize.agreement_texts`) and the
    result is recorded. Under ``min_agreement`` (None: the one recorded, else
    :data:`~intentkit.export.quantize.DEFAULT_MIN_AGREEMENT`) the graph stays on disk for
    inspection, marked refused, and :class:`~intentkit.export.quantize.Int8Refused` is raised,
    here and by every
    later load, until an export accepts it with a lower ``min_agreement``.
    """
    from intentkit.export.quantize import check_accepted, gate

    model_dir = check_artifact_dir(model_dir)
    require_onnx()
    kind = "int8" if int8 else "fp32"
    shipped = None if force else _fresh(model_dir / ONNX_DIR, model_dir, kind)
    if shipped is not None and kind == "int8":
        info = _read_manifest(shipped.parent)["files"]["int8"]
        regated = info if min_agreement is None else gate(info, min_agreement)
        if data is not None or regated["agreement"] != info["agreement"]:
            shipped = None  # measure again / record the new decision: below, under the lock
        else:
            check_accepted(info, model_dir)
    if shipped is not None:  # exported ahead of time (`intentkit export`), maybe read-only now
        return shipped
    from filelock import FileLock

    folder = export_dir(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # Two servers starting on one model (deploy of fp32 and int8, say) export once: the second
    # waits for the lock, then finds the export fresh.
    with FileLock(str(folder / ".export.lock"), timeout=1800):
        path = _export_locked(
            model_dir, folder, kind=kind, force=force, min_agreement=min_agreement, data=data
        )
    if kind == "int8":  # raised after the manifest is written: the refusal is on record
        check_accepted(_read_manifest(folder)["files"]["int8"], model_dir)
    return path


def _export_locked(
    model_dir: Path,
    folder: Path,
    *,
    kind: str,
    force: bool,
    min_agreement: float | None,
    data: str | Path | None,
) -> Path:
    from intentkit.export.quantize import DEFAULT_MIN_AGREEMENT, gate, measure_agreement

    target = folder / FILES[kind]
    current = fingerprint(model_dir)
    manifest = _read_manifest(folder)
    if force or not _current(manifest, model_dir):
        # stale, older graph outputs, or forced: every graph is remade
        manifest = {"source": current, "graph_version": GRAPH_VERSION, "files": {}}
    elif _has(manifest, folder, kind) and (data is None or kind == "fp32"):
        if kind == "fp32":  # another process exported it while we waited
            return target
        info = manifest["files"]["int8"]
        if min_agreement is not None:  # the same graph, judged against a new minimum
            manifest["files"]["int8"] = gate(info, min_agreement)
            atomic_write_json(folder / MANIFEST, manifest)
        return target

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from intentkit.modeling import quiet_transformers

    with quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    max_length = served_max_length(model.config, read_meta(model_dir))
    batches = _sample_batches(max_length, model.config.vocab_size, tokenizer.pad_token_id or 0)
    fp32 = folder / FILES["fp32"]
    if not _has(manifest, folder, "fp32"):
        log.info("exporting %s to ONNX (fp32)", model_dir)
        tmp = folder / f".{FILES['fp32']}.tmp-{os.getpid()}"
        try:
            _torch_export(model, tmp, batches[1])
            diff = _max_diff(model, tmp, batches)
            if not diff <= TOLERANCE:
                raise ModelError(
                    f"ONNX export of {model_dir} differs from PyTorch by {diff:.3g} in logits "
                    f"(limit {TOLERANCE}); serve it with --backend torch"
                )
            os.replace(tmp, fp32)
        finally:
            tmp.unlink(missing_ok=True)
        manifest["files"]["fp32"] = {"file": FILES["fp32"], "max_abs_logit_diff": diff}
    if kind == "int8":
        previous = manifest["files"].get("int8") or {}
        if not _has(manifest, folder, "int8"):
            from intentkit.export.quantize import calibration_feeds

            feeds = calibration_feeds(read_meta(model_dir), data, tokenizer, max_length)
            previous = _quantize_verified(model, fp32, target, batches, feeds)
        agreement = measure_agreement(fp32, target, tokenizer, model.config, model_dir, data)
        floor = (previous.get("agreement") or {}).get("min", DEFAULT_MIN_AGREEMENT)
        info = {**previous, "agreement": agreement}
        manifest["files"]["int8"] = gate(info, floor if min_agreement is None else min_agreement)
    manifest.update(
        opset=OPSET,
        versions={m: _version(m) for m in ("torch", "transformers", "onnx", "onnxruntime")},
    )
    atomic_write_json(folder / MANIFEST, manifest)
    return target


def _quantize_verified(
    model: Any,
    fp32: Path,
    target: Path,
    batches: list[tuple[np.ndarray, np.ndarray]],
    feeds: list[dict[str, np.ndarray]],
) -> dict[str, Any]:
    """Quantise ``fp32`` into ``target`` (atomically); its manifest entry, agreement to come.

    ``feeds``: training-text batches for the SmoothQuant scales (empty: none found).
    """
    from intentkit.export.quantize import quantize

    log.info("quantizing %s to int8 (SmoothQuant + ONNX Runtime, per-channel weights)", fp32)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        recipe = quantize(fp32, tmp, feeds)
        diff = _max_diff(model, tmp, batches)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return {"file": target.name, "max_abs_logit_diff": diff, "quantization": recipe}


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "absent"
