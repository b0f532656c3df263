"""``intentkit export``: write (or refresh) a model's ONNX files for the ``onnx`` backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from intentkit.cli.app import app


@app.command()
def export(
    model_dir: Annotated[Path, typer.Argument(help="Trained artifact folder.")],
    int8: Annotated[
        bool, typer.Option("--int8", help="Also write the dynamic-int8 graph (model.int8.onnx).")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Re-export even if up to date.")] = False,
) -> None:
    """Export MODEL_DIR to ONNX, verified against PyTorch; `serve` then uses it on CPU.

    `serve --backend auto` (the default) makes this export on first start; run it ahead of time
    to keep start-up short, or in a build step for a read-only model folder.
    """
    from intentkit.onnx_backend import MANIFEST, export_onnx

    path = export_onnx(model_dir, int8=int8, force=force)
    manifest = json.loads((path.parent / MANIFEST).read_text("utf-8"))
    for kind, info in manifest["files"].items():
        f = path.parent / info["file"]
        size = f.stat().st_size / 2**20
        diff = info["max_abs_logit_diff"]
        print(f"{kind}: {f} ({size:.1f} MiB, max |logit - PyTorch| {diff:.2g})")
