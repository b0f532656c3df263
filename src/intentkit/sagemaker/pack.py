"""Pack a trained artifact into the ``model.tar.gz`` that SageMaker extracts to /opt/ml/model.

Two layouts, one per serving image:

* ``intentkit``, for intentkit's own image (``intentkit serve /opt/ml/model``, mounted
  read-only): the artifact's files at the archive root plus its verified ONNX export in
  ``onnx/``, so the endpoint starts without exporting (seconds to tens of seconds per start).
* ``sagemaker-hf``, for the Hugging Face inference containers: the artifact's files plus
  ``code/inference.py`` (:mod:`intentkit.sagemaker.image.hf_inference`), which those
  containers import.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any

from intentkit.artifact import check_artifact_dir
from intentkit.errors import ConfigError, ModelError
from intentkit.export.onnx_graph import MANIFEST, export_onnx, fingerprint, onnx_available
from intentkit.fsutil import atomic_open

FORMATS = ("intentkit", "sagemaker-hf")
#: ECR repository of the Hugging Face inference images (also ``...-neuron``/``-neuronx``). TGI
#: (``huggingface-pytorch-tgi-inference``) and TEI images run no user code, so they do not count.
HF_REPOSITORY = "huggingface-pytorch-inference"
HANDLER = Path(__file__).parent / "image" / "hf_inference.py"
# Never part of an artifact: editors' and writers' temp files, and archives someone left there.
SKIP_SUFFIXES = (".tmp", ".partial", ".lock", ".tar.gz", ".tgz")
# gzip level 1: weights are float tensors that gzip barely shrinks (MiniLM's safetensors: 91.9 %
# of the size at level 1, 91.5 % at 6, which took a third longer), so higher levels only cost time.
GZIP_LEVEL = 1


def is_hf_image(image_uri: str) -> bool:
    """Whether ``image_uri`` is a Hugging Face PyTorch inference image, which runs
    ``code/inference.py`` (so it needs ``pack_model(..., fmt="sagemaker-hf")``).

    Such URIs look like ``763104351884.dkr.ecr.us-east-1.amazonaws.com/
    huggingface-pytorch-inference:2.1.0-transformers4.37.0-cpu-py310-ubuntu22.04``; the ECR
    repository name (between the last ``/`` and the tag or digest) decides.
    """
    repository = image_uri.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return repository.startswith(HF_REPOSITORY)


def artifact_files(model_dir: Path) -> list[Path]:
    """The files that make the artifact: its top-level files, less dotfiles and temp files.

    Folders are by-products (``checkpoints/``, ``eval/``) or rebuilt here (``onnx/``).
    """
    return sorted(
        p
        for p in model_dir.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(SKIP_SUFFIXES)
    )


def _whole_seconds(path: Path) -> int:
    # From st_mtime_ns, not the float st_mtime, which can round up to the next second.
    return path.stat().st_mtime_ns // 10**9


def _add_file(tar: tarfile.TarFile, src: Path, arcname: str, mtime: int) -> None:
    # Built by hand rather than tar.add(): root-owned, world-readable (the serving container may
    # run as another user) and no local user names in the archive.
    with open(src, "rb") as fh:
        info = tarfile.TarInfo(arcname)
        info.size = os.fstat(fh.fileno()).st_size
        info.mtime = mtime
        info.mode = 0o644
        tar.addfile(info, fh)


def _add_bytes(tar: tarfile.TarFile, data: bytes, arcname: str, mtime: int) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = len(data)
    info.mtime = mtime
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, arcname: str, mtime: int) -> None:
    info = tarfile.TarInfo(arcname)
    info.type = tarfile.DIRTYPE
    info.mtime = mtime
    info.mode = 0o755
    tar.addfile(info)


def _onnx_export(
    model_dir: Path, int8: bool, min_agreement: float | None, data: Path | None, instead: str
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Export (or reuse) the ONNX graphs: (their folder, manifest, source fingerprint).

    An int8 graph is shipped only if accepted (its agreement with fp32 at least
    ``min_agreement``): otherwise ``Int8Refused`` is raised and nothing is packed."""
    if not onnx_available():
        raise ConfigError(
            "packing for intentkit's image includes the ONNX export, which needs onnxruntime "
            f"and onnx: pip install 'intentkit[onnx]' (or {instead})"
        )
    # model_dir/onnx or the user cache
    folder = export_onnx(model_dir, int8=int8, min_agreement=min_agreement, data=data).parent
    manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
    source = fingerprint(model_dir)
    if manifest.get("source") != source:
        raise ModelError(f"MODEL_DIR {model_dir} changed during the ONNX export; run it again")
    kinds = ["fp32", "int8"] if int8 else ["fp32"]
    manifest["files"] = {kind: manifest["files"][kind] for kind in kinds}  # only what was asked
    return folder, manifest, source


def _shipped_manifest(
    manifest: dict[str, Any], source: dict[str, Any], mtimes: dict[str, int]
) -> dict[str, Any]:
    """The export manifest as it must read after extraction, so the server finds it fresh.

    It fingerprints the source files by size and ``st_mtime_ns``. A tar member keeps whole
    seconds (ustar) or a decimal float (pax), and extractors restore the float differently, so a
    copied manifest would look stale and every start would export again (into the user cache,
    as /opt/ml/model is read-only). Every member's mtime is therefore a whole second, which all
    extractors restore exactly, and the shipped manifest records those same whole seconds.
    """
    shipped = {name: [size, mtimes[name] * 10**9] for name, (size, _) in source.items()}
    return {**manifest, "source": shipped}


def pack_model(
    model_dir: Path,
    dest: Path,
    *,
    fmt: str = "intentkit",
    onnx: bool = True,
    int8: bool = False,
    min_agreement: float | None = None,
    data: Path | None = None,
    without_onnx: str = "pass --no-onnx",
) -> Path:
    """Write ``dest`` (a ``model.tar.gz``) for SageMaker from the artifact ``model_dir``.

    Args:
        model_dir: a trained artifact folder (validated first).
        dest: the archive to write; replaced atomically if it exists. Not inside ``model_dir``.
        fmt: ``intentkit`` (intentkit's image) or ``sagemaker-hf`` (Hugging Face inference image).
        onnx: ``intentkit`` only: ship the ONNX export (made now if missing or stale).
        int8: ``intentkit`` only: ship the int8 graph too (for ``--dtype int8``), which must
            have passed the agreement gate (:func:`intentkit.export.onnx_graph.export_onnx`).
        min_agreement: int8 only: the gate's minimum (None: the recorded one, else 99.5 %).
        data: int8 only: prepared data to measure agreement on (None: the training data).
        without_onnx: what the error suggests, besides the ``onnx`` extra, when ONNX Runtime is
            missing (the caller's own way to go without it).

    Returns:
        ``dest``. Archive members sit at the root: artifact files (see :func:`artifact_files`),
        then ``onnx/`` or ``code/inference.py``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt}")
    if fmt == "sagemaker-hf" and int8:
        raise ConfigError(
            "--int8 ships an ONNX graph for intentkit's image; the Hugging Face handler runs "
            "PyTorch fp32: drop --int8 or use --format sagemaker"
        )
    model_dir = check_artifact_dir(model_dir).resolve()
    dest = Path(dest).resolve()
    if dest.is_relative_to(model_dir):
        raise ConfigError(f"--output {dest} is inside MODEL_DIR; write the archive elsewhere")
    folder = manifest = source = None
    if fmt == "intentkit" and onnx:
        folder, manifest, source = _onnx_export(model_dir, int8, min_agreement, data, without_onnx)
    # Listed after the export, which may take a while: this snapshot is what gets packed.
    files = artifact_files(model_dir)
    mtimes = {p.name: _whole_seconds(p) for p in files}
    now = int(time.time())

    with (
        atomic_open(dest) as fh,
        tarfile.open(fileobj=fh, mode="w:gz", compresslevel=GZIP_LEVEL) as tar,
    ):
        for path in files:
            _add_file(tar, path, path.name, mtimes[path.name])
        if folder is not None and manifest is not None and source is not None:
            _add_dir(tar, "onnx", now)
            for info in manifest["files"].values():
                graph = folder / info["file"]
                _add_file(tar, graph, f"onnx/{graph.name}", _whole_seconds(graph))
            shipped = _shipped_manifest(manifest, source, mtimes)
            text = json.dumps(shipped, indent=2) + "\n"
            _add_bytes(tar, text.encode("utf-8"), "onnx/export.json", now)
            # Raised inside the with: the half-written archive is removed, dest left as it was.
            if fingerprint(model_dir) != source:
                raise ModelError(f"MODEL_DIR {model_dir} changed while it was packed; pack again")
        if fmt == "sagemaker-hf":
            _add_dir(tar, "code", now)
            _add_file(tar, HANDLER, "code/inference.py", now)
    return dest
