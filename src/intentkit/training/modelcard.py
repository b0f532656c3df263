"""The artifact's ``README.md`` model card: data, hyper-parameters, metrics, calibration."""

from __future__ import annotations

from typing import Any

_HYPER = (
    "model_resolved",
    "max_length",
    "epochs",
    "batch_size",
    "grad_accum",
    "lr",
    "warmup_steps",
    "warmup_ratio",
    "weight_decay",
    "dropout",
    "label_smoothing",
    "class_weights",
    "metric",
    "patience",
    "seed",
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def render_model_card(meta: dict[str, Any]) -> str:
    """Render a Markdown model card from the ``intentkit.json`` dict of an artifact."""
    cfg = meta.get("train_config", {})
    data = meta.get("data", {})
    labels = meta.get("labels", [])
    training = meta.get("training", {})
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags: [intentkit, intent-classification]",
        "---",
        "",
        f"# Intent classifier ({len(labels)} intents)",
        "",
        f"Fine-tuned from `{cfg.get('model')}` with intentkit {meta.get('intentkit_version', '')}"
        f" on {meta.get('created', '')}.",
        "",
        "```python",
        "from transformers import pipeline",
        'clf = pipeline("text-classification", model="PATH/TO/THIS/FOLDER")',
        "# or, with calibrated confidences and out-of-scope rejection:",
        'import intentkit; intentkit.load("PATH/TO/THIS/FOLDER").predict(["hi"])',
        "```",
        "",
        "## Data",
        "",
        f"- path: `{data.get('path')}`",
        f"- fingerprint: `{data.get('fingerprint')}`",
        f"- rows: {data.get('n_train')} train, {data.get('n_val')} validation "
        f"({data.get('val_source')})",
        f"- labels: {', '.join(labels[:30])}{' …' if len(labels) > 30 else ''}",
        "",
        "## Hyper-parameters",
        "",
        "| parameter | value |",
        "|---|---|",
    ]
    values = {**cfg, "max_length": meta.get("max_length")}
    lines += [f"| {k} | {_fmt(values.get(k))} |" for k in _HYPER]
    lines += [
        f"| precision | {training.get('precision')} |",
        f"| attention | {training.get('attention')} |",
        f"| steps | {training.get('global_step')} ({_fmt(training.get('epochs_completed'))} "
        "epochs) |",
        "",
        "## Validation metrics (best checkpoint)",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(meta.get("metrics", {}).items())]
    cal = meta.get("calibration")
    if cal:
        val = cal.get("val", {})
        lines += [
            "",
            "## Calibration and out-of-scope rejection",
            "",
            f"- temperature: {_fmt(cal.get('temperature'))}; threshold: "
            f"{_fmt(cal.get('threshold'))}; reject label: `{cal.get('reject_label')}`; "
            f"oos label: `{cal.get('oos_label')}`",
            f"- validation ECE {_fmt(val.get('ece_before'))} → {_fmt(val.get('ece_after'))}; "
            f"in-scope accuracy {_fmt(val.get('in_scope_accuracy'))} "
            f"(target {_fmt(cal.get('target_in_scope_accuracy'))})",
            "- `transformers.pipeline` returns the raw (uncalibrated, never rejecting) top class;",
            "  intentkit's Predictor and server apply the temperature and threshold.",
        ]
    phases = training.get("phases")
    if phases:
        # Where the run's wall time went (issue #12: overhead outside the training steps).
        lines += [
            "",
            "## Training time",
            "",
            f"{_fmt(phases.get('total_s'))} s in all, "
            f"{phases.get('outside_train_steps_share', 0.0):.0%} outside the training steps.",
            "",
            "| phase | seconds |",
            "|---|---|",
        ]
        lines += [
            f"| {k} | {v:.2f} |"
            for k, v in phases.items()
            if k not in ("total_s", "outside_train_steps_share")
        ]
    versions = meta.get("versions", {})
    lines += [
        "",
        "## Versions",
        "",
        ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
    ]
    return "\n".join(lines)
