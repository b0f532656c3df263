"""Where checkpoints live, which are complete, and clearing or checking an output folder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from intentkit.errors import ConfigError
from intentkit.fsutil import check_output_dir

CHECKPOINTS_DIR = "checkpoints"
#: The resolved TrainConfig, written beside the checkpoints so ``--resume`` needs no flags.
RUN_CONFIG_FILE = "intentkit_train_config.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def complete_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """``checkpoint-N`` folders that finished writing, oldest first.

    The Trainer writes ``trainer_state.json`` last, so a folder without it (or without weights)
    is the remains of a kill mid-save and must not be resumed from.
    """
    if not checkpoint_dir.is_dir():
        return []
    found = []
    for p in checkpoint_dir.iterdir():
        m = _CHECKPOINT_RE.match(p.name)
        if (
            m
            and p.is_dir()
            and (p / "trainer_state.json").is_file()
            and (p / "model.safetensors").is_file()
        ):
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def checkpoints_dir(out: Path, checkpoint_dir: Path | None = None) -> Path:
    """Where a run's checkpoints live: ``checkpoint_dir`` when given, else ``out/checkpoints``."""
    return Path(checkpoint_dir) if checkpoint_dir is not None else out / CHECKPOINTS_DIR


def _is_inside(path: Path, parent: Path) -> bool:
    path, parent = path.resolve(), parent.resolve()
    return path == parent or parent in path.parents


def check_run_out(
    out: Path,
    *,
    force: bool,
    resume: bool,
    rank: int = 0,
    checkpoint_dir: Path | None = None,
) -> Path | None:
    """Check ``--out``/``--checkpoint-dir``/``--force``/``--resume`` (no side effects).

    Returns the checkpoint to resume from (None for a new run). A ``checkpoint_dir`` outside
    ``out`` (the SageMaker container keeps them apart: ``/opt/ml/model`` is shipped,
    ``/opt/ml/checkpoints`` is synced to S3) must be empty for a new run too.
    """

    ckpts = checkpoints_dir(out, checkpoint_dir)
    if force and resume:
        raise ConfigError("Can't provide both --force and --resume: --resume keeps the run")
    if checkpoint_dir is not None and _is_inside(out, ckpts):
        # clear_out(--force) and write_artifact would then delete or move the checkpoints.
        raise ConfigError(
            f"--checkpoint-dir {ckpts} holds --out {out}; choose a folder beside or inside --out"
        )
    if resume:
        done = complete_checkpoints(ckpts)
        if not done:
            raise ConfigError(
                f"--resume: no complete checkpoint in {ckpts}; "
                "start a new run without --resume (add --force to replace the folder)"
            )
        return done[-1]
    if rank == 0:  # other ranks would see rank 0's first checkpoint and refuse
        check_output_dir(out, force=force)
        if not _is_inside(ckpts, out):
            check_output_dir(ckpts, force=force, flag="--checkpoint-dir")
    return None


def clear_out(out: Path, *, rank: int = 0, checkpoint_dir: Path | None = None) -> None:
    """Empty ``out`` (and a separate ``checkpoint_dir``) for ``--force``.

    Called only once every input has been validated.
    """

    if rank != 0:
        return
    if out.is_dir():
        # intentkit.json first: if we die mid-delete the folder reads as incomplete, not a model.
        (out / "intentkit.json").unlink(missing_ok=True)
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    ckpts = checkpoints_dir(out, checkpoint_dir)
    if ckpts.is_dir():  # a separate checkpoint folder: old checkpoints would be resumed or rotated
        for child in ckpts.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
