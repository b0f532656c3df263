"""What ``intentkit tune`` leaves in MODEL_DIR, and its progress table.

* ``tune/tune.json``: every trial (number, state, params, value, duration, intermediate values).
* ``tune/best-preset.yaml``: the winning settings, for ``intentkit train --preset FILE``.
* ``tune/trials/<n>``: trial folders; only the best complete trial's survives a trial's end.
* MODEL_DIR's top level: the best trial's model, promoted at the end as a normal artifact.

Both JSON and YAML are rewritten atomically after every trial, so a killed search still leaves
an up-to-date report beside its study.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intentkit.errors import ConfigError, IntentkitError

# The names of what tune leaves, here (not in tune.py) so that tune.py imports this module and
# never the other way round.
TUNE_DIR = "tune"  #: MODEL_DIR/tune holds the study, the trial folders and the reports
STUDY_FILE = "study.db"
STUDY_NAME = "intentkit-tune"
RESULTS_FILE = "tune.json"
PRESET_FILE = "best-preset.yaml"
TRIALS_DIR = "trials"
MAX_ROWS = 15  #: trials shown in the progress table (the newest)
_SHORT = {"lr": "lr", "epochs": "ep", "batch_size": "bs", "warmup_ratio": "warm"}
_SHORT.update(weight_decay="wd", label_smoothing="ls", layerwise_lr_decay="lld", class_weights="cw")


def resumed_settings(stored: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The study's stored settings; a flag given on ``--resume`` must agree with them.

    Changing the base config half-way would mix trials of two searches in one study.
    """
    for key, value in [("preset", given["preset"]), *given["overrides"].items()]:
        old = stored.get("preset") if key == "preset" else stored.get("overrides", {}).get(key)
        if value is not None and value != old:
            was = "without it" if old is None else f"with {old}"
            raise ConfigError(
                f"--{key.replace('_', '-')} {value}: the study was started {was}; drop the flag "
                "to resume it, or start anew with --force"
            )
    return {
        "preset": stored.get("preset"),
        "overrides": dict(stored.get("overrides") or {}),
        "trials": stored.get("trials"),
        "budget_s": stored.get("budget_s"),
    }


def _fmt_s(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _fmt_params(params: dict[str, Any]) -> str:
    def show(v: Any) -> str:
        return "off" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))

    return " ".join(f"{_SHORT.get(k, k)}={show(v)}" for k, v in params.items())


def _trial_row(t: Any) -> dict[str, Any]:
    row = {
        "number": t.number,
        "state": t.state.name.lower(),
        "params": t.params,
        "value": t.value,
        "duration_s": round(t.duration.total_seconds(), 2) if t.duration else None,
        "intermediate_values": {str(k): v for k, v in sorted(t.intermediate_values.items())},
        "started": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
    }
    row.update({k: t.user_attrs[k] for k in ("base_config", "retry_of", "interrupted")
                if k in t.user_attrs})  # fmt: skip
    return row


def _link_or_copy(src: str, dst: str) -> None:
    # A hard link costs no disk and leaves the trial folder whole until the promotion is done.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def promote(src: Path, out: Path, tune_meta: dict[str, Any]) -> Path:
    """Make trial folder ``src`` the artifact at ``out``'s top level; return ``out``.

    Ordered like ``write_artifact``: ``intentkit.json`` goes first and comes back last, so a
    crash leaves a folder that reads as incomplete, never a mix of two models; ``src`` stays
    whole until the end, so re-running with ``--resume`` repairs it.
    """
    from intentkit.artifact import META_FILE, check_artifact_dir, read_meta
    from intentkit.fsutil import atomic_write_json
    from intentkit.training.checkpoints import CHECKPOINTS_DIR

    if not src.is_dir():
        if read_meta(out).get("tune", {}).get("trial") == tune_meta["trial"]:
            return out  # promoted by an earlier run of this study
        raise IntentkitError(
            f"--resume: the best trial's model folder {src} is gone; start anew with --force"
        )
    tmp = Path(tempfile.mkdtemp(prefix=".best.", suffix=".partial", dir=out))
    try:
        shutil.copytree(
            src, tmp, dirs_exist_ok=True, copy_function=_link_or_copy,
            ignore=shutil.ignore_patterns(CHECKPOINTS_DIR),
        )  # fmt: skip
        # A new file (os.replace), not a write through the hard link into src's copy.
        atomic_write_json(tmp / META_FILE, {**read_meta(tmp), "tune": tune_meta})
        (out / META_FILE).unlink(missing_ok=True)
        for child in sorted(tmp.iterdir()):
            if child.name == META_FILE:
                continue
            target = out / child.name
            if target.is_dir():
                shutil.rmtree(target)  # os.replace cannot replace a non-empty folder
            os.replace(child, target)
        os.replace(tmp / META_FILE, out / META_FILE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(src, ignore_errors=True)
    return check_artifact_dir(out, flag="--out")


@dataclass
class Search:
    """One run of ``intentkit tune``: trial folders, reports, table and time budget."""

    study: Any
    out: Path
    metric: str
    trials: int | None  #: finished trials the study should hold (None: until the budget)
    budget_s: float | None  #: this run's time budget
    space: dict[str, tuple[Any, ...]]
    section: dict[str, Any]  #: the base preset's train section
    overrides: dict[str, Any]  #: flags given to tune (fixed in every trial)
    preset: str | None
    data: Path
    console: Any = None
    requeued: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.console is None:
            from rich.console import Console

            self.console = Console()
        if self.requeued:
            shown = ", ".join(str(n) for n in self.requeued)
            self.console.print(f"resuming: trial(s) {shown} were interrupted and run again")

    @property
    def tune_dir(self) -> Path:
        """``MODEL_DIR/tune``."""
        return self.out / TUNE_DIR

    def trial_dir(self, number: int) -> Path:
        """Where trial ``number`` trains."""
        return self.tune_dir / TRIALS_DIR / str(number)

    def best(self) -> Any | None:
        """The best complete trial, or None."""
        from optuna.trial import TrialState

        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return self.study.best_trial if done else None

    def clean_trial_dirs(self) -> None:
        """Delete every trial folder but the best complete trial's (and what a kill left)."""
        root = self.tune_dir / TRIALS_DIR
        best = self.best()
        for child in root.iterdir() if root.is_dir() else []:
            if best is None or child.name != str(best.number):
                shutil.rmtree(child, ignore_errors=True)

    def fits_another(self) -> bool:
        """False once this run's time plus a mean complete trial would pass the budget."""
        from optuna.trial import TrialState

        if self.budget_s is None:
            return True
        spent = time.monotonic() - self.started
        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        took = [t.duration.total_seconds() for t in complete if t.duration]
        need = sum(took) / len(took) if took else 0.0
        if spent + need <= self.budget_s:
            return True
        self.console.print(
            f"time budget {_fmt_s(self.budget_s)}: {_fmt_s(spent)} spent and a trial takes about "
            f"{_fmt_s(need)}, so no new trial starts (a running trial is always let finish)"
        )
        return False

    def after_trial(self, study: Any, trial: Any) -> None:
        """Optuna callback: keep only the best folder, rewrite the reports, show the table."""
        best = self.best()
        if best is not None and best.number == trial.number:
            self.clean_trial_dirs()
            self.write_preset(best)
        else:
            shutil.rmtree(self.trial_dir(trial.number), ignore_errors=True)
        self.write_results()
        self.console.print(self.table())
        if not self.fits_another():
            study.stop()

    def finish(self) -> Path:
        """Promote the best trial's model to ``out``, write the reports; return ``out``."""
        best = self.best()
        if best is None:
            raise IntentkitError(
                f"no trial completed in {self.tune_dir}; rerun with --resume and a larger "
                "--trials or --time-budget"
            )
        tune_meta = {"trial": best.number, "metric": self.metric, "value": best.value}
        promote(self.trial_dir(best.number), self.out, {**tune_meta, "study": STUDY_FILE})
        self.write_results()
        preset = self.write_preset(best)
        self.console.print(
            f"best: trial {best.number}, validation {self.metric} {best.value:.4f}; "
            f"model in {self.out}, settings in {preset}"
        )
        return self.out

    def write_results(self) -> Path:
        """Write ``tune/tune.json`` (every trial) atomically."""
        from intentkit.fsutil import atomic_write_json

        trials = self.study.get_trials(deepcopy=False)
        best = self.best()
        doc = {
            "metric": self.metric,
            "scored_on": "validation",
            "direction": "maximize",
            "study": str(self.tune_dir / STUDY_FILE),
            "data": str(self.data),
            "preset": self.preset,
            "fixed": self.overrides,
            "space": {k: list(v) for k, v in self.space.items()},
            "trials_target": self.trials,
            "time_budget_s": self.budget_s,
            "counts": dict(Counter(t.state.name.lower() for t in trials)),
            "best": None if best is None else {
                "number": best.number, "value": best.value, "params": best.params
            },
            "trials": [_trial_row(t) for t in trials],
        }  # fmt: skip
        path = self.tune_dir / RESULTS_FILE
        atomic_write_json(path, doc)
        return path

    def write_preset(self, best: Any) -> Path:
        """Write the best trial's settings as ``tune/best-preset.yaml`` (``train --preset``)."""
        import yaml

        from intentkit.config import load_preset
        from intentkit.fsutil import atomic_write_text

        train = {**self.section, **self.overrides, **best.params}
        train.pop("device", None)  # the machine's business, not the recipe's
        base = f"preset {self.preset}" if self.preset else "the default config"
        doc: dict[str, Any] = {
            "description": (
                f"Found by `intentkit tune` on {self.data}: trial {best.number} of "
                f"{len(self.study.trials)}, validation {self.metric} {best.value:.4f}; "
                f"searched around {base}."
            )
        }
        data_section = load_preset(self.preset).get("data") if self.preset else None
        if data_section:
            doc["data"] = data_section
        doc["train"] = train
        path = self.tune_dir / PRESET_FILE
        atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False))
        return path

    def table(self) -> Any:
        """A rich table of the newest trials: value, running best, time, parameters."""
        from optuna.trial import TrialState
        from rich.table import Table

        trials = [t for t in self.study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
        rows, best = [], None
        for t in trials:
            if t.state == TrialState.COMPLETE and (best is None or t.value > best):
                best = t.value
            rows.append((t, best))
        finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        title = f"tune: {finished}/{self.trials or '-'} trials, "
        title += f"{_fmt_s(time.monotonic() - self.started)} this run"
        if self.budget_s:
            title += f" of {_fmt_s(self.budget_s)}"
        hidden = max(0, len(rows) - MAX_ROWS)
        table = Table(title=title, caption=f"{hidden} earlier trials not shown" if hidden else None)
        for name in ("trial", "state", f"val {self.metric}", "best so far", "time", "params"):
            table.add_column(name, justify="left" if name in ("state", "params") else "right")
        for t, running in rows[hidden:]:
            value = "" if t.value is None else f"{t.value:.4f}"
            if t.state == TrialState.PRUNED and t.intermediate_values:
                step = max(t.intermediate_values)
                value = f"{t.intermediate_values[step]:.4f} @eval {step}"
            table.add_row(
                str(t.number),
                t.state.name.lower(),
                value,
                "" if running is None else f"{running:.4f}",
                _fmt_s(t.duration.total_seconds()) if t.duration else "",
                _fmt_params(t.params),
            )
        return table
