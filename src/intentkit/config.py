"""Typed configuration, grouped by concern, plus YAML presets.

Every field is documented; ``__post_init__`` validates and names the CLI flag in its message, and
all problems of one config are collected and raised together. Precedence everywhere:
dataclass defaults < preset (``--preset``) < explicit flags.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from intentkit.errors import ConfigError

CLASS_WEIGHT_MODES = ("none", "balanced", "sqrt")
METRICS = ("accuracy", "macro_f1", "weighted_f1")
DEVICES = ("auto", "cpu", "cuda", "mps")
BACKENDS = ("auto", "torch", "onnx")
#: torch.compile modes for `serve --compile` (reduce-overhead records CUDA graphs per shape).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise ConfigError("; ".join(problems))


#: ``--oos-scorer`` values (:mod:`intentkit.inference.oos`); ``auto`` picks on validation.
OOS_SCORERS = ("softmax", "mahalanobis", "knn", "combined", "auto")
#: ``--objective`` values (:mod:`intentkit.training.objectives`).
OBJECTIVES = ("ce", "contrastive", "auto")


#: The label answered for rejected inputs when a calibration names none (``--reject-label``);
#: :func:`intentkit.inference.decision.reject_label_of` reads an artifact's.
DEFAULT_REJECT_LABEL = "out_of_scope"


@dataclass
class DataConfig:
    """How ``intentkit data prepare`` reads, cleans and splits a dataset."""

    text_column: str | None = None  #: --text-column; None = detect (text, instruction, ...)
    label_column: str | None = None  #: --label-column; None = detect (label, category, intent, ...)
    test_size: float = 0.2  #: --test-size, share of rows held out for test (single-split sources)
    val_size: float = 0.0  #: --val-size, share held out for validation (0 = none)
    seed: int = 42  #: --seed for the stratified split
    min_per_label: int = 2  #: --min-per-label, labels with fewer rows are an error
    include_oos: bool = False  #: --include-oos, keep CLINC150's out-of-scope rows as label "oos"
    resplit: bool = False  #: --resplit, ignore a source's official splits and split anew

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.test_size < 1:
            problems.append(
                f"--test-size must be a share between 0 and 1 (exclusive), got {self.test_size:g};"
                " e.g. --test-size 0.2"
            )
        if not 0 <= self.val_size < 1:
            problems.append(
                f"--val-size must be a share in [0, 1), got {self.val_size:g}; e.g. --val-size 0.1"
                " (0 = no val split)"
            )
        if not problems and self.test_size + self.val_size >= 1:
            problems.append(
                f"--test-size + --val-size must be below 1, got {self.test_size + self.val_size:g};"
                " lower one of them so train keeps rows"
            )
        if self.min_per_label < 1:
            problems.append(f"--min-per-label must be at least 1, got {self.min_per_label}")
        _raise_if(problems)


@dataclass
class TrainConfig:
    """Fine-tuning hyper-parameters (``intentkit train``)."""

    model: str = "modernbert-base"  #: --model: alias, local folder or hub id
    max_length: int | None = None  #: --max-length; None = data inspect's recommendation
    epochs: float = 3.0  #: --epochs
    batch_size: int = 32  #: --batch-size per device
    eval_batch_size: int = 64  #: --eval-batch-size
    lr: float = 5e-5  #: --lr peak learning rate
    warmup_steps: int | None = None  #: --warmup-steps (absolute); exclusive with --warmup-ratio
    warmup_ratio: float | None = None  #: --warmup-ratio of total steps (default 0.1)
    weight_decay: float = 0.01  #: --weight-decay
    grad_accum: int = 1  #: --grad-accum gradient accumulation steps
    dropout: float | None = None  #: --dropout applied to every dropout field of the model
    label_smoothing: float = 0.0  #: --label-smoothing
    class_weights: str = "none"  #: --class-weights none|balanced|sqrt
    metric: str = "macro_f1"  #: --metric used to pick the best checkpoint
    patience: int | None = None  #: --patience evaluations without improvement before stopping
    early_stopping_threshold: float = 0.0  #: --early-stopping-threshold minimum improvement
    eval_steps: int | None = None  #: --eval-steps; None = evaluate every epoch
    val_size: float = 0.1  #: --val-size carved from train when the data has no val split
    seed: int = 42  #: --seed
    device: str = "auto"  #: --device auto|cpu|cuda|mps
    gradient_checkpointing: bool = False  #: --gradient-checkpointing (slower, less memory)
    report_to: str = "none"  #: --report-to none|tensorboard
    save_total_limit: int = 2  #: checkpoints kept in MODEL_DIR/checkpoints
    layerwise_lr_decay: float | None = None  #: --layerwise-lr-decay factor per layer (e.g. 0.9)
    oos_label: str | None = None  #: --oos-label: label in the data that means out-of-scope
    reject_label: str = DEFAULT_REJECT_LABEL  #: --reject-label answered below the threshold
    #: --oos-target: keep validation in-scope accuracy >= this while rejecting as much
    #: out-of-scope as possible; None = the accuracy with no rejection minus one point.
    oos_target: float | None = None
    #: --oos-scorer softmax|mahalanobis|knn|combined|auto (OOS_SCORERS): the out-of-scope score
    #: the threshold reads; auto picks on validation (best oos recall at the target; with no
    #: out-of-scope validation rows, mahalanobis: bench/oos_without_oos.py). All but softmax
    #: store oos_stats.safetensors in the artifact.
    oos_scorer: str = "auto"
    #: --oos-prior: out-of-scope share of traffic that the served P(oos | x) assumes.
    oos_prior: float = 0.1
    calibrate: bool = True  #: fit temperature + threshold on validation after training
    #: --objective ce|contrastive|auto (OBJECTIVES): contrastive aligns and contrasts the
    #: encoder's CLS feature, then trains the head on the frozen encoder
    #: (intentkit.training.objectives); auto picks contrastive when the smallest class has at
    #: most 32 train rows. --epochs/--lr then apply to nothing: --pair-*/--head-* do.
    objective: str = "ce"
    pair_epochs: int = 5  #: --pair-epochs epochs of each encoder step (align, contrast)
    pair_lr: float = 3e-5  #: --pair-lr learning rate of the contrast step
    head_epochs: float = 10.0  #: --head-epochs epochs of the head on the frozen encoder
    head_lr: float = 1e-3  #: --head-lr learning rate of the head on the frozen encoder
    #: --supcon-weight W: add W x supervised contrastive loss on the CLS feature (0 = off)
    supcon_weight: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  #: preset-only knobs for experiments

    def __post_init__(self) -> None:
        problems = []
        if self.warmup_steps is not None and self.warmup_ratio is not None:
            problems.append("Can't provide both --warmup-steps and --warmup-ratio")
        if self.max_length is not None and self.max_length < 8:
            problems.append(f"--max-length must be at least 8, got {self.max_length}")
        if self.epochs <= 0:
            problems.append(f"--epochs must be positive, got {self.epochs}")
        for name in ("batch_size", "eval_batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1")
        if self.lr <= 0:
            problems.append(f"--lr must be positive, got {self.lr}")
        if self.class_weights not in CLASS_WEIGHT_MODES:
            problems.append(f"--class-weights must be one of {', '.join(CLASS_WEIGHT_MODES)}")
        if self.metric not in METRICS:
            problems.append(f"--metric must be one of {', '.join(METRICS)}")
        if self.device not in DEVICES:
            problems.append(f"--device must be one of {', '.join(DEVICES)}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            problems.append(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 < self.val_size < 1:
            problems.append(f"--val-size must be between 0 and 1, got {self.val_size}")
        if self.oos_target is not None and not 0 < self.oos_target <= 1:
            problems.append(f"--oos-target must be in (0, 1], got {self.oos_target}")
        if self.oos_scorer not in OOS_SCORERS:
            problems.append(
                f"--oos-scorer must be one of {', '.join(OOS_SCORERS)}, got {self.oos_scorer}"
            )
        if not 0 < self.oos_prior < 1:
            problems.append(f"--oos-prior must be in (0, 1), got {self.oos_prior}")
        if self.objective not in OBJECTIVES:
            problems.append(
                f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective}"
            )
        if self.pair_epochs < 1:
            problems.append(f"--pair-epochs must be at least 1, got {self.pair_epochs}")
        if self.head_epochs <= 0:
            problems.append(f"--head-epochs must be positive, got {self.head_epochs}")
        for name in ("pair_lr", "head_lr"):
            if getattr(self, name) <= 0:
                problems.append(f"--{name.replace('_', '-')} must be positive")
        if self.supcon_weight < 0:
            problems.append(f"--supcon-weight must be >= 0 (0 = off), got {self.supcon_weight}")
        if self.report_to not in ("none", "tensorboard"):
            problems.append("--report-to must be none or tensorboard")
        _raise_if(problems)


#: ``--capture-text`` modes: the text itself, its HMAC-SHA256 under a per-folder salt, or nothing.
CAPTURE_TEXT_MODES = ("full", "hash", "none")


@dataclass
class CaptureConfig:
    """Traffic capture of ``serve --capture DIR`` (:mod:`intentkit.serve.capture`)."""

    dir: str  #: --capture folder of JSON Lines files
    sample: float = 1.0  #: --capture-sample fraction of answered texts written (0 < x <= 1)
    text: str = "full"  #: --capture-text full|hash|none
    max_file_mb: float = 64.0  #: --capture-file-mb a file is closed (rotated) past this size
    max_total_mb: float = 1024.0  #: --capture-max-mb disk cap: oldest files deleted past it
    rotate_s: float = 300.0  #: --capture-rotate-s a file is also closed after this many seconds
    queue: int = 10000  #: requests waiting for the writer; more are dropped (their texts counted)

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.sample <= 1:
            problems.append(f"--capture-sample must be in (0, 1], got {self.sample}")
        if self.text not in CAPTURE_TEXT_MODES:
            problems.append(f"--capture-text must be one of {', '.join(CAPTURE_TEXT_MODES)}")
        if not 0 < self.max_file_mb <= self.max_total_mb:
            problems.append("--capture-file-mb must be > 0 and not above --capture-max-mb")
        if self.rotate_s <= 0 or self.queue < 1:
            problems.append("--capture-rotate-s must be > 0 and --capture-queue at least 1")
        _raise_if(problems)


PORT_ENV = "INTENTKIT_PORT"


def port_from_env(environ: Mapping[str, str], name: str = PORT_ENV) -> int | None:
    """``$INTENTKIT_PORT`` (or another port variable ``name``) as a port number, None when unset or
    empty; the one reader of port variables (``intentkit serve`` and ``intentkit container serve``
    both ask here)."""
    text = environ.get(name)
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"${name} must be a port number (1-65535), got {text!r}")
    return int(text)


@dataclass
class ServeConfig:
    """HTTP server and micro-batcher settings (``intentkit serve`` / ``deploy``)."""

    host: str = "127.0.0.1"  #: --host; 127.0.0.1 unless told otherwise
    port: int = 8080  #: --port (SageMaker's container contract uses 8080)
    max_batch_tokens: int = 16384  #: --max-batch-tokens padded tokens per forward pass
    max_batch_size: int = 256  #: --max-batch-size texts per forward pass
    max_wait_ms: float = 5.0  #: --max-wait-ms a request waits for others to share its batch
    split_tokens: int | None = None  #: --split-tokens; None = 128 on CPU, 0 (no split) on GPU
    max_queue: int = 1024  #: --max-queue pending texts before answering 429
    max_body_bytes: int = 1_000_000  #: --max-body-bytes request body limit (413 above)
    max_texts_per_request: int = 1024  #: texts in one request (413 above)
    api_key: str | None = None  #: --api-key bearer token; None = no auth
    device: str = "auto"  #: --device auto|cpu|cuda
    reject: bool = True  #: --no-reject turns out-of-scope rejection off
    threads: int | None = None  #: --threads; None = all cores (torch int8: all but one)
    dtype: str = "fp32"  #: --dtype fp32|int8 (CPU) or auto|bf16|fp16 (GPU)
    backend: str = "auto"  #: --backend auto|torch|onnx (auto: ONNX Runtime on CPU if installed)
    timeout_graceful_s: float = 30.0  #: --graceful-timeout s in-flight requests get on SIGTERM
    log_level: str = "info"  #: --log-level for uvicorn and intentkit loggers
    playground: bool = True  #: --no-playground turns off the test page at GET /
    #: --buckets/--no-buckets: pad batches to a few fixed (batch, width) shapes, each warmed at
    #: load (intentkit.inference.buckets); None = on CUDA only
    buckets: bool | None = None
    compile: bool = False  #: --compile: torch.compile the model (CUDA, static shapes per bucket)
    compile_mode: str = "default"  #: --compile-mode default|reduce-overhead (CUDA graphs)
    capture: CaptureConfig | None = None  #: --capture DIR: write answered texts; None = off

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.port < 65536:
            problems.append(f"--port must be in 1..65535, got {self.port}")
        for name in (
            "max_batch_tokens",
            "max_batch_size",
            "max_queue",
            "max_body_bytes",
            "max_texts_per_request",
        ):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_texts_per_request > self.max_queue:
            # A request larger than the whole queue could never be admitted: it would 429 forever.
            problems.append(
                f"--max-texts-per-request ({self.max_texts_per_request}) must not exceed "
                f"--max-queue ({self.max_queue})"
            )
        if self.log_level not in LOG_LEVELS:
            problems.append(f"--log-level must be one of {', '.join(LOG_LEVELS)}")
        if self.timeout_graceful_s < 0:
            problems.append(f"--graceful-timeout must be >= 0, got {self.timeout_graceful_s}")
        if self.split_tokens is not None and self.split_tokens < 0:
            problems.append(f"--split-tokens must be >= 0, got {self.split_tokens}")
        if self.max_wait_ms < 0:
            problems.append(f"--max-wait-ms must be >= 0, got {self.max_wait_ms}")
        if self.device not in DEVICES:
            problems.append(f"--device must be one of {', '.join(DEVICES)}")
        if self.backend not in BACKENDS:
            problems.append(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend}")
        if self.compile_mode not in COMPILE_MODES:
            problems.append(f"--compile-mode must be one of {', '.join(COMPILE_MODES)}")
        _raise_if(problems)


def list_presets() -> list[str]:
    """Names of the YAML presets shipped in ``intentkit/presets``."""
    root = resources.files("intentkit") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def _is_preset_path(name: str) -> bool:
    # A bundled name never has a suffix or a separator, so those always mean a file.
    return name.endswith((".yaml", ".yml")) or "/" in name or "\\" in name


def load_preset(name: str) -> dict[str, Any]:
    """Read preset ``name`` as ``{"data": {...}, "train": {...}, "serve": {...}}`` sections.

    ``name`` is a bundled preset (:func:`list_presets`) or a path to a YAML file of the same
    shape, e.g. the ``best-preset.yaml`` that ``intentkit tune`` writes.
    """
    from pathlib import Path

    import yaml

    if _is_preset_path(name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"--preset {name}: no such file; pass a YAML file or a bundled preset "
                f"({', '.join(list_presets())})"
            )
        text = path.read_text("utf-8")
    else:
        names = list_presets()
        if name not in names:
            raise ConfigError(f"--preset {name}: unknown preset; choose one of {', '.join(names)}")
        text = (resources.files("intentkit") / "presets" / f"{name}.yaml").read_text("utf-8")
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"--preset {name}: not valid YAML{line}; fix the file") from exc
    if not isinstance(doc, dict) or not all(isinstance(v, dict | str) for v in doc.values()):
        raise ConfigError(
            f"--preset {name}: expected a mapping with data/train/serve sections; fix the file"
        )
    unknown = set(doc) - {"description", "data", "train", "serve"}
    if unknown:
        raise ConfigError(f"preset {name} has unknown sections: {', '.join(sorted(unknown))}")
    return doc


def build(cls: type, preset: dict[str, Any] | None = None, **flags: Any) -> Any:
    """Build a config dataclass from defaults < preset section < flags that are not None."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for source in (preset or {}, {k: v for k, v in flags.items() if v is not None}):
        unknown = set(source) - names
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown option(s) {', '.join(sorted(unknown))}")
        values.update(source)
    return cls(**values)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (written into every artifact)."""
    return dataclasses.asdict(cfg)
