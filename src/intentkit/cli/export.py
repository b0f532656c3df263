"""``intentkit export``: the ONNX export for the ``onnx`` backend, or a SageMaker model.tar.gz."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from intentkit.cli.app import app
from intentkit.errors import ConfigError, OutputExistsError
from intentkit.export.quantize import DEFAULT_MIN_AGREEMENT, agreement_where

EXPORT_FORMATS = ("onnx", "sagemaker", "sagemaker-hf")
#: --format -> pack_model's fmt
PACK_FORMATS = {"sagemaker": "intentkit", "sagemaker-hf": "sagemaker-hf"}


@app.command()
def export(
    model_dir: Annotated[Path, typer.Argument(help="Trained artifact folder.")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="onnx: write MODEL_DIR/onnx for `serve`. sagemaker: model.tar.gz for "
            "intentkit's image (with the ONNX export). sagemaker-hf: model.tar.gz for the "
            "Hugging Face inference images (with code/inference.py).",
        ),
    ] = "onnx",
    output: Annotated[
        Path | None,
        typer.Option(
            help="The archive to write (sagemaker formats; default: MODEL_DIR-<format>.tar.gz "
            "beside MODEL_DIR)."
        ),
    ] = None,
    dtype: Annotated[
        str,
        typer.Option(
            help="fp32, or int8: also write the int8 graph (model.int8.onnx) and measure how "
            "often it gives fp32's answer on the validation split."
        ),
    ] = "fp32",
    int8: Annotated[bool, typer.Option("--int8", help="Same as --dtype int8.")] = False,
    min_agreement: Annotated[
        float,
        typer.Option(
            help="int8: the share of validation answers (top-1, rejection included) that must "
            "match fp32 for `--dtype int8` to use the graph; under it the export exits 2."
        ),
    ] = DEFAULT_MIN_AGREEMENT,
    data: Annotated[
        Path | None,
        typer.Option(
            help="int8: prepared data folder to measure agreement on (default: the one the "
            "model was trained on, from intentkit.json)."
        ),
    ] = None,
    no_onnx: Annotated[
        bool, typer.Option("--no-onnx", help="sagemaker: leave the ONNX export out (GPU hosts).")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="onnx: re-export even if up to date; sagemaker*: replace --output."
        ),
    ] = False,
) -> None:
    """Export MODEL_DIR to ONNX (verified against PyTorch), or pack it for SageMaker.

    `serve --backend auto` (the default) makes the ONNX export on first start; run it ahead of
    time to keep start-up short, or in a build step for a read-only model folder.
    `--format sagemaker` packs the model and its ONNX export for intentkit's image, so the
    endpoint starts without exporting; `--format sagemaker-hf` packs it with a handler for the
    Hugging Face inference images (same answers as `/invocations`).
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt}")
    if dtype not in ("fp32", "int8"):
        raise ConfigError(f"--dtype must be fp32 or int8, got {dtype}")
    if not 0.0 <= min_agreement <= 1.0:
        raise ConfigError(
            f"--min-agreement is a share between 0 and 1 (0.995 for 99.5 %), got {min_agreement}"
        )
    int8 = int8 or dtype == "int8"
    gate = {"min_agreement": min_agreement, "data": data}
    if fmt == "onnx":
        if output is not None or no_onnx:
            flag = "--output" if output is not None else "--no-onnx"
            raise ConfigError(
                f"{flag} applies to --format sagemaker|sagemaker-hf; the ONNX export goes to "
                "MODEL_DIR/onnx"
            )
        _export_onnx(model_dir, int8=int8, force=force, **gate)
        return
    _pack(model_dir, fmt, output, int8=int8, onnx=not no_onnx, force=force, **gate)


def _export_onnx(
    model_dir: Path, *, int8: bool, force: bool, min_agreement: float, data: Path | None
) -> None:
    from intentkit.export.onnx_graph import MANIFEST, export_dir, export_onnx
    from intentkit.export.quantize import Int8Refused

    try:
        path = export_onnx(
            model_dir,
            int8=int8,
            force=force,
            min_agreement=min_agreement if int8 else None,
            data=data if int8 else None,
        )
    except Int8Refused:
        # The graph and its measurement are on disk for inspection; print them, then refuse.
        _print_manifest(export_dir(model_dir) / MANIFEST)
        raise
    _print_manifest(path.parent / MANIFEST)


def _print_manifest(manifest_path: Path) -> None:
    manifest = json.loads(manifest_path.read_text("utf-8"))
    for kind, info in manifest["files"].items():
        f = manifest_path.parent / info["file"]
        size = f.stat().st_size / 2**20
        diff = info["max_abs_logit_diff"]
        print(f"{kind}: {f} ({size:.1f} MiB, max |logit - PyTorch| {diff:.2g})")
        if kind != "int8":
            continue
        q, a = info["quantization"], info["agreement"]
        print(f"  quantization: {q['name']} ({q['method']}, weights {q['weights']})")
        value = "not measured" if a["value"] is None else f"{a['value']:.2%}"
        verdict = "accepted" if a["accepted"] else "REFUSED"
        print(
            f"  same answer as fp32: {value} of {agreement_where(a)} ({a['data']}); "
            f"min {a['min']:.2%}: {verdict} for --dtype int8"
        )


def _pack(
    model_dir: Path,
    fmt: str,
    output: Path | None,
    *,
    int8: bool,
    onnx: bool,
    force: bool,
    min_agreement: float,
    data: Path | None,
) -> None:
    from intentkit.artifact import check_artifact_dir
    from intentkit.sagemaker.pack import pack_model

    model_dir = check_artifact_dir(model_dir).resolve()
    if output is None:
        # Beside MODEL_DIR, never inside it: the archive must not end up packing itself.
        output = model_dir.parent / f"{model_dir.name}-{fmt}.tar.gz"
    if output.is_dir():
        raise ConfigError(f"--output {output} is a folder; pass a file path such as model.tar.gz")
    if output.exists() and not force:
        raise OutputExistsError(
            f"--output {output} exists; pass --force to replace it or choose another path"
        )
    path = pack_model(
        model_dir,
        output,
        fmt=PACK_FORMATS[fmt],
        onnx=onnx,
        int8=int8,
        min_agreement=min_agreement if int8 else None,
        data=data if int8 else None,
    )
    print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB)")
