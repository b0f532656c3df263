"""Hyper-parameter search over :func:`intentkit.train` with Optuna (``intentkit tune``).

Design, and why:

* **One trial is one ordinary ``train()`` run** into ``MODEL_DIR/tune/trials/<n>``: the same
  data handling, device and dtype rules, calibration and artifact as ``intentkit train``.
* **Scored on validation only**: a trial's value is the best validation ``--metric`` the Trainer
  kept (``intentkit.json`` ``metrics``); the test split is never read. Seed and ``val_size`` are
  never searched, so every trial is scored on the same validation rows.
* **Seeded TPE whose first trial is the base config** (``--preset``/flags, ``enqueue_trial``):
  the search starts from the hand-made recipe, so the winner is never worse on validation than
  the preset it started from (once that first trial has run).
* **Pruning from the first evaluation**: a ``TrainerCallback`` reports the validation metric to
  ``trial.report`` at every evaluation and raises ``optuna.TrialPruned`` when the pruner says so.
  Raising, not ``control.should_training_stop``: a graceful stop would still save a checkpoint,
  reload the best one, re-evaluate, calibrate and write an artifact for a discarded trial.
* **Resumable**: the study lives in ``MODEL_DIR/tune/study.db`` (Optuna's RDB storage on
  SQLite, ``load_if_exists``). One ``tune`` holds a MODEL_DIR at a time (a lock file), so at start
  every trial still RUNNING is the remains of a killed run: it is marked FAIL and its parameters
  are queued again (as are trials interrupted by Ctrl-C). Optuna's heartbeat would only call a
  trial stale after a grace period, so a quick re-run would still see it RUNNING.
* **Bounded disk**: a trial's checkpoints go when it ends; pruned, failed and beaten trials are
  deleted at once; only the best trial's model is kept, and it becomes MODEL_DIR's artifact.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from intentkit.config import TrainConfig, build, load_preset
from intentkit.errors import ConfigError
from intentkit.training.tune_outputs import STUDY_FILE, STUDY_NAME, TUNE_DIR

DEFAULT_TRIALS = 20

#: The search space: TrainConfig field -> ("log" | "float" | "int", low, high) or ("choice",
#: choices). Ranges bracket the recipes of bench/RESULTS.md (MiniLM 2e-4..4e-4 with layer-wise
#: decay 0.85-0.9, ModernBERT 3e-5..8e-5) with a margin. A flag given to ``tune`` fixes that field.
#:
#: ==================  ======================  =============================================
#: field               range                   note
#: ==================  ======================  =============================================
#: lr                  1e-5 .. 1e-3, log       matters most; log-uniform
#: epochs              2 .. 8 (int)            the best checkpoint is kept, so more is safe
#: batch_size          16 | 32 | 64
#: warmup_ratio        0 .. 0.2
#: weight_decay        0 .. 0.1
#: label_smoothing     0 .. 0.2
#: layerwise_lr_decay  off | 0.8 | 0.85 | 0.9 | 0.95
#: class_weights       none | balanced | sqrt
#: ==================  ======================  =============================================
SPACE: dict[str, tuple[Any, ...]] = {
    "lr": ("log", 1e-5, 1e-3),
    "epochs": ("int", 2, 8),
    "batch_size": ("choice", (16, 32, 64)),
    "warmup_ratio": ("float", 0.0, 0.2),
    "weight_decay": ("float", 0.0, 0.1),
    "label_smoothing": ("float", 0.0, 0.2),
    "layerwise_lr_decay": ("choice", (None, 0.8, 0.85, 0.9, 0.95)),
    "class_weights": ("choice", ("none", "balanced", "sqrt")),
}
_BUDGET_RE = re.compile(r"^(\d+(?:\.\d+)?)([smh]?)$")


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise ConfigError("intentkit tune needs Optuna: pip install 'intentkit[tune]'") from exc
    return optuna


def parse_time_budget(value: str | float | None) -> float | None:
    """Seconds of ``--time-budget``: ``30m``, ``1800s``, ``1h`` or a plain number of seconds."""
    if value is None:
        return None
    if isinstance(value, str):
        m = _BUDGET_RE.match(value.strip().lower())
        if not m:
            raise ConfigError(f"--time-budget {value}: use a duration like 30m, 1800s or 1h")
        seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    else:
        seconds = float(value)
    if seconds <= 0:
        raise ConfigError(f"--time-budget {value}: must be positive, e.g. 30m")
    return seconds


def default_pruner() -> Any:
    """Optuna's ``PercentilePruner(25)``, active from a trial's first evaluation.

    A trial stops when its best validation metric up to its k-th evaluation is below the 25th
    percentile of the completed trials' k-th evaluations (at least 2 of them). Not the median:
    at the first evaluation trials sit at different points of their LR schedules (a longer
    schedule still has a high LR), so the median would drop half of them on one noisy point.
    """
    optuna = _optuna()
    return optuna.pruners.PercentilePruner(
        25.0, n_startup_trials=2, n_warmup_steps=0, n_min_trials=2
    )


def pruning_callback(trial: Any, metric: str) -> Any:
    """A ``TrainerCallback`` reporting ``eval_<metric>`` to ``trial`` at every evaluation.

    The step is the evaluation's index (1, 2, ...), not the global step, which depends on the
    trial's batch size. Raises ``optuna.TrialPruned`` when the study's pruner says stop.
    """
    optuna = _optuna()
    from transformers import TrainerCallback

    class OptunaPruningCallback(TrainerCallback):
        def __init__(self) -> None:
            self.evaluations = 0
            self.training = True  # train() re-evaluates the best checkpoint after training

        def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            value = (kw.get("metrics") or {}).get(f"eval_{metric}")
            if not self.training or value is None:
                return
            self.evaluations += 1
            trial.report(float(value), self.evaluations)
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"validation {metric} {value:.4f} at evaluation {self.evaluations}"
                )

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.training = False

    return OptunaPruningCallback()


def _suggest(trial: Any, space: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    params = {}
    for name, (kind, *spec) in space.items():
        if kind == "choice":
            params[name] = trial.suggest_categorical(name, list(spec[0]))
        elif kind == "int":
            params[name] = trial.suggest_int(name, spec[0], spec[1])
        else:
            params[name] = trial.suggest_float(name, spec[0], spec[1], log=kind == "log")
    return params


def _base_params(cfg: TrainConfig, space: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    """The base config's values that lie inside the space (enqueued as the first trial)."""
    params = {}
    for name, (kind, *spec) in space.items():
        value = getattr(cfg, name)
        if name == "warmup_ratio" and value is None:
            value = 0.1  # train()'s default
        if name == "epochs" and float(value).is_integer():
            value = int(value)
        if (value in spec[0]) if kind == "choice" else (spec[0] <= value <= spec[1]):
            params[name] = value
    return params


def _lock(tune_dir: Path) -> Any:
    """Hold ``tune/.lock`` for the process's life: one ``tune`` per MODEL_DIR (POSIX only)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock; don't run two tunes on one folder
        return None
    fh = (tune_dir / ".lock").open("w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.close()
        raise ConfigError(
            f"--out {tune_dir.parent}: another `intentkit tune` is running on it; wait for it "
            "or choose another --out"
        ) from exc
    return fh


def _requeue_interrupted(study: Any) -> list[int]:
    """Mark killed (still RUNNING) trials FAIL and queue the parameters of those and of Ctrl-C'd
    trials again, once each. Safe because the lock says no other process runs a trial."""
    from optuna.trial import TrialState

    retried = {t.user_attrs.get("retry_of") for t in study.get_trials(deepcopy=False)}
    requeued = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.FAIL)):
        if t.state == TrialState.RUNNING:
            study.tell(t.number, state=TrialState.FAIL)
        elif not t.user_attrs.get("interrupted"):
            continue  # a trial that raised an error is not retried blindly
        if t.number not in retried:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            requeued.append(t.number)
    return requeued


def tune(
    data: str | Path,
    out: str | Path,
    *,
    trials: int | None = None,
    time_budget: str | float | None = None,
    preset: str | None = None,
    resume: bool = False,
    force: bool = False,
    pruner: Any | None = None,
    console: Any | None = None,
    **overrides: Any,
) -> Path:
    """Search hyper-parameters on validation and write the best model to ``out``; return ``out``.

    Args:
        data: a prepared dataset folder (as for ``train``).
        out: the model folder; the study, reports and trial folders go to ``out/tune``.
        trials: finished (complete or pruned) trials the study should hold; default 20 unless
            ``time_budget`` is given. Exclusive with ``time_budget``.
        time_budget: seconds, or ``30m``/``1800s``/``1h``, for this run: no new trial starts
            once the mean complete trial no longer fits; a running trial always finishes.
        preset: base config (bundled name or YAML file), as for ``train``.
        resume: continue the study in ``out/tune/study.db`` with its stored base config.
        force: replace a non-empty ``out``.
        pruner: an Optuna pruner instead of :func:`default_pruner`.
        console: a ``rich.console.Console`` for the progress table.
        **overrides: TrainConfig fields; a searched field given here is fixed, not searched.
    """
    optuna = _optuna()
    from optuna.trial import TrialState

    from intentkit.data.dataset import load_prepared
    from intentkit.inference.predictor import resolve_device
    from intentkit.modeling import load_config
    from intentkit.training import tune_outputs as outputs
    from intentkit.training.checkpoints import clear_out

    out, overrides = Path(out), {k: v for k, v in overrides.items() if v is not None}
    tune_dir = out / TUNE_DIR
    db = tune_dir / STUDY_FILE
    if trials is not None and time_budget is not None:
        raise ConfigError("Can't provide both --trials and --time-budget; pick one")
    if trials is not None and trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    budget = parse_time_budget(time_budget)
    if force and resume:
        raise ConfigError("Can't provide both --force and --resume: --resume keeps the study")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("intentkit tune runs its trials in one process; run it without torchrun")
    if resume and not db.is_file():
        raise ConfigError(f"--resume: no study at {db}; start one without --resume")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder path")
    if not resume and out.is_dir() and any(out.iterdir()) and not force:
        hint = "--resume to continue its study, " if db.is_file() else ""
        raise ConfigError(f"--out {out} is not empty; pass {hint}--force to replace it")

    storage = None
    settings = {"preset": preset, "overrides": overrides, "trials": trials, "budget_s": budget}
    if resume:
        storage = optuna.storages.RDBStorage(f"sqlite:///{db.resolve()}")
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
        settings = outputs.resumed_settings(study.user_attrs.get("intentkit", {}), settings)
    section = dict(load_preset(settings["preset"]).get("train") or {}) if settings["preset"] else {}
    cfg = build(TrainConfig, section, **settings["overrides"])
    load_prepared(data)  # every input is validated before --out is touched
    resolve_device(cfg.device)
    load_config(cfg.model)
    fixed = set(settings["overrides"]) | ({"warmup_ratio"} if cfg.warmup_steps else set())
    space = {k: v for k, v in SPACE.items() if k not in fixed}
    if trials is None and budget is None:
        trials, budget = settings["trials"], settings["budget_s"]  # --resume: the stored limits
        trials = DEFAULT_TRIALS if trials is None and budget is None else trials
    settings.update(trials=trials, budget_s=budget)

    if force:
        clear_out(out)
    tune_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock(tune_dir)
    verbosity = optuna.logging.get_verbosity()
    # Our table reports each trial; Optuna's INFO lines and its "trial failed" WARNING (with a
    # traceback, for errors the CLI prints as one line) would repeat it.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        storage = storage or optuna.storages.RDBStorage(f"sqlite:///{db.resolve()}")
        done = len(study.trials) if resume else 0
        study = optuna.create_study(
            storage=storage,
            study_name=STUDY_NAME,
            direction="maximize",
            # Offset by the trials already run: a resumed run must not replay the same draws.
            # 5 random trials before TPE models the space (Optuna's default 10 would use up a
            # 30-minute CPU budget, which fits ~5 trials of MiniLM on Banking77).
            sampler=optuna.samplers.TPESampler(seed=cfg.seed + done, n_startup_trials=5),
            pruner=pruner or default_pruner(),
            load_if_exists=True,
        )
        if not resume:
            study.set_user_attr("intentkit", {**settings, "data": str(data)})
            study.enqueue_trial(_base_params(cfg, space), user_attrs={"base_config": True})
        requeued = _requeue_interrupted(study) if resume else []
        search = outputs.Search(
            study=study, out=out, metric=cfg.metric, trials=trials, budget_s=budget,
            space=space, console=console, section=section, overrides=settings["overrides"],
            preset=settings["preset"], data=Path(data), requeued=requeued,
        )  # fmt: skip
        search.clean_trial_dirs()
        finished = len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))
        remaining = None if trials is None else max(0, trials - finished)
        if remaining != 0 and search.fits_another():
            study.optimize(
                _objective(data, search, section, settings["overrides"], space),
                n_trials=remaining,
                timeout=budget,
                catch=_oom_errors(),
                callbacks=[search.after_trial],
            )
        return search.finish()
    finally:
        optuna.logging.set_verbosity(verbosity)
        if lock is not None:
            lock.close()


def _objective(
    data: str | Path,
    search: Any,
    section: dict[str, Any],
    overrides: dict[str, Any],
    space: dict[str, tuple[Any, ...]],
) -> Any:
    from intentkit.artifact import read_meta
    from intentkit.training.checkpoints import CHECKPOINTS_DIR
    from intentkit.training.train import train

    def objective(trial: Any) -> float:
        params = _suggest(trial, space)
        # save_total_limit 1: the best checkpoint is all a trial needs until its artifact exists.
        cfg = build(TrainConfig, {**section, **params}, **{**overrides, "save_total_limit": 1})
        folder = search.trial_dir(trial.number)
        shutil.rmtree(folder, ignore_errors=True)
        try:
            train(data, folder, config=cfg, callbacks=[pruning_callback(trial, cfg.metric)])
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)  # queued again by --resume
            shutil.rmtree(folder, ignore_errors=True)
            raise
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            _free_memory()
        shutil.rmtree(folder / CHECKPOINTS_DIR, ignore_errors=True)
        return float(read_meta(folder)["metrics"][cfg.metric])

    return objective


def _oom_errors() -> tuple[type[Exception], ...]:
    # A batch size that does not fit the GPU fails that trial only; other errors stop the search.
    import torch

    return (torch.cuda.OutOfMemoryError,)


def _free_memory() -> None:
    # A pruned trial's exception holds the model until collected; free it before the next trial.
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
