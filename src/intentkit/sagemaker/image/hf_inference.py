"""SageMaker Hugging Face inference handler for intentkit models, shipped as ``code/inference.py``.

The Hugging Face inference containers (image ``huggingface-pytorch-inference``) put
``/opt/ml/model/code`` on ``sys.path``, import ``inference`` and call, per request,
``input_fn(body, content_type)`` -> ``predict_fn(data, model)`` -> ``output_fn(prediction,
accept)``, after ``model_fn(model_dir)`` once at start-up. JSON bodies arrive as ``str``, other
content types (JSON Lines) as ``bytes``; any exception becomes a 400 with its message.

It answers what ``intentkit serve`` answers on ``POST /invocations``:
``{"text": str}`` -> ``{"predicted_class", "confidence"}``, ``{"text": [...]}`` -> a list,
``application/jsonlines`` (one ``{"text": ...}`` per line, as batch transform sends) -> JSON Lines.
The decision rule is ``intentkit.inference.decision.apply``'s: softmax(logits / temperature),
the answer is the reject label when the top-class probability is below the threshold or the top
class is the model's own out-of-scope label; confidence is the calibrated top-class probability.
With a feature scorer (``calibration["oos_scorer"]`` ``mahalanobis``, ``knn`` or ``combined``)
it applies the same feature-space rule (``intentkit.inference.oos``: distances of the last
layer's CLS feature to the nearest class mean and to the nearest training rows, from
``oos_stats.safetensors``) and the same out-of-scope-aware confidence, in numpy.

This module must stay importable with only the standard library, numpy, torch and transformers
(on Python 3.8 too, which older containers run): the Hugging Face containers do not have
intentkit. ``tests/test_packaging.py`` runs it in a process where ``import intentkit`` fails and
checks its answers against ``intentkit predict``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

JSON_TYPES = ("application/json", "text/json")
JSONLINES_TYPES = ("application/jsonlines", "application/jsonl", "application/x-jsonlines")
BATCH_SIZE = 64  # texts per forward pass, as intentkit's Predictor


def _load_tokenizer(model_dir: str) -> Any:
    """The artifact's tokenizer; straight from ``tokenizer.json`` if AutoTokenizer cannot load it.

    A tokenizer saved by transformers 5 names its class ``TokenizersBackend``, which the
    transformers 4.x of most Hugging Face containers does not know. ``tokenizer.json`` holds the
    whole pipeline (normalizer, word pieces, [CLS]/[SEP] template), so the fast tokenizer built
    from it gives the same ids.
    """
    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except (ValueError, OSError, KeyError):
        path = os.path.join(model_dir, "tokenizer.json")
        if not os.path.isfile(path):
            raise
    from transformers import PreTrainedTokenizerFast

    specials = {}
    config_path = os.path.join(model_dir, "tokenizer_config.json")
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as fh:
            config = json.load(fh)
        specials = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}
    return PreTrainedTokenizerFast(tokenizer_file=path, **specials)


def choose_device(context: Any, gpus: int) -> str:
    """This worker's torch device: ``cpu`` without GPUs, else the GPU the model server gave it.

    The Hugging Face toolkit starts one worker per GPU (or several) and passes each a context
    whose ``system_properties["gpu_id"]`` is its own GPU
    (``sagemaker_huggingface_inference_toolkit/handler_service.py``, ``get_device``); every
    worker taking ``cuda`` would pile them all on GPU 0. Without a context (older toolkits call
    ``model_fn(model_dir)``) the current device is used.
    """
    if gpus <= 0:
        return "cpu"
    properties = getattr(context, "system_properties", None) or {}
    gpu_id = properties.get("gpu_id")
    if gpu_id is None:
        return "cuda"
    # The server assigns ids round-robin over the visible GPUs already; the modulo only keeps
    # an id from a server configured for more GPUs than this instance has on a real one.
    return f"cuda:{int(gpu_id) % gpus}"


def model_fn(model_dir: str, context: Any = None) -> dict[str, Any]:
    """Load the artifact in ``model_dir`` (fp32) on this worker's device (:func:`choose_device`).

    Two parameters, so the toolkit passes its context (it counts them).
    """
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = choose_device(context, gpus)
    # fp32 whatever the saved dtype: the calibration was fitted on fp32 logits.
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).float().to(device).eval()
    meta_path = os.path.join(model_dir, "intentkit.json")
    meta = {}
    if os.path.isfile(meta_path):
        with open(meta_path, encoding="utf-8") as fh:
            meta = json.load(fh)
    config = model.config
    # intentkit.artifact.served_max_length: the trained length, else the position limit <= 512.
    limit = getattr(config, "max_position_embeddings", 512) or 512
    return {
        "model": model,
        "tokenizer": _load_tokenizer(model_dir),
        "device": device,
        "labels": [str(config.id2label[i]) for i in range(len(config.id2label))],
        "max_length": int(meta.get("max_length") or min(limit, 512)),
        "calibration": meta.get("calibration"),
        "oos_stats": _load_stats(model_dir, meta.get("calibration") or {}),
    }


def _load_stats(model_dir: str, calibration: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """``oos_stats.safetensors`` when the scorer reads features; a clear error when missing."""
    scorer = calibration.get("oos_scorer") or "softmax"
    if scorer == "softmax":
        return None
    if scorer not in ("mahalanobis", "knn", "combined"):
        raise ValueError(f"this handler knows softmax, mahalanobis, knn and combined, not {scorer}")
    path = os.path.join(model_dir, "oos_stats.safetensors")
    if not os.path.isfile(path):
        raise ValueError(f"{path} is missing: the calibration's {scorer} scorer needs it")
    from safetensors.numpy import load_file

    stats = load_file(path)
    need = {"knn": "bank", "combined": "combined_norm"}.get(scorer)
    if need and need not in stats:
        raise ValueError(f"{path} has no {need}: refit it for the {scorer} scorer")
    return stats


def _distance(stats: dict[str, np.ndarray], features: np.ndarray, scorer: str) -> np.ndarray:
    """``intentkit.inference.oos.OosStats.distances``: Mahalanobis to the nearest class mean,
    1 - cos to the k-th nearest training row, or their standardised sum."""
    x = np.asarray(features, dtype=np.float64)
    d_m = d_k = None
    if scorer in ("mahalanobis", "combined"):
        z = x @ stats["whiten"]
        m = stats["means_w"]
        d2 = (z**2).sum(1)[:, None] - 2.0 * z @ m.T + (m**2).sum(1)[None, :]
        d_m = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    if scorer in ("knn", "combined"):
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        unit = (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)
        bank = stats["bank"]
        k = min(int(stats["knn_k"][0]), len(bank))
        d_k = np.empty(len(x))
        for start in range(0, len(x), 1024):
            sim = unit[start : start + 1024] @ bank.T
            d_k[start : start + 1024] = 1.0 - -np.partition(-sim, k - 1, axis=1)[:, k - 1]
    if scorer == "mahalanobis":
        return d_m
    if scorer == "knn":
        return d_k
    m_mu, m_sd, k_mu, k_sd = (float(v) for v in stats["combined_norm"])
    return (d_m - m_mu) / m_sd + (d_k - k_mu) / k_sd


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def _texts(value: Any, field: str) -> list[str]:
    """Check one ``text`` value (a string or a list of strings) the way the server does."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"`{field}` must be a string or a list of strings")
    if not texts:
        raise ValueError(f"`{field}` is an empty list; send at least one text")
    for i, text in enumerate(texts):
        if not text.strip():
            where = field if isinstance(value, str) else f"{field}[{i}]"
            raise ValueError(f"`{where}` is empty; send a non-empty text")
    return texts


def input_fn(body: str | bytes | bytearray, content_type: str) -> dict[str, Any]:
    """Parse a request: JSON ``{"text": str | [str]}`` (or ``{"inputs": ...}``) or JSON Lines."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"the body is not UTF-8 text ({exc})") from None
    ctype = _media_type(content_type)
    if ctype in JSONLINES_TYPES:
        texts = []
        for n, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {n}: invalid JSON ({exc})") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f'line {n}: expected {{"text": "..."}}')
            texts.append(row["text"])
        if not texts:
            raise ValueError('the JSON Lines body has no lines; send one {"text": ...} per line')
        return {"texts": _texts(texts, "text"), "single": False, "jsonlines": True}
    if ctype in JSON_TYPES or not ctype:
        try:
            request = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON ({exc})") from None
        # "inputs" is the Hugging Face toolkit's own field name; accept it too.
        keys = ("text", "inputs") if isinstance(request, dict) else ()
        field = next((k for k in keys if k in request), None)
        if field is None:
            raise ValueError('expected {"text": "..."} or {"text": ["...", ...]}')
        value = request[field]
        return {"texts": _texts(value, field), "single": isinstance(value, str), "jsonlines": False}
    raise ValueError(
        f"Content-Type {content_type!r}: send application/json or application/jsonlines"
    )


def _logits(model: dict[str, Any], texts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits (n, labels) in input order: length-sorted batches, each padded to its longest;
    and the out-of-scope score (-distance) of each text when the scorer reads features."""
    tokenizer = model["tokenizer"]
    ids = tokenizer(texts, truncation=True, max_length=model["max_length"], padding=False)
    ids = ids["input_ids"]
    pad = tokenizer.pad_token_id or 0
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.empty((len(ids), len(model["labels"])), dtype=np.float32)
    stats = model.get("oos_stats")
    score = np.empty(len(ids), dtype=np.float64) if stats is not None else None
    captured = {}

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        captured["cls"] = output[0][:, 0]  # last_hidden_state's CLS row, before any pooler

    for start in range(0, len(order), BATCH_SIZE):
        chunk = order[start : start + BATCH_SIZE]
        width = max(len(ids[i]) for i in chunk)
        input_ids = np.full((len(chunk), width), pad, dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for row, i in enumerate(chunk):
            input_ids[row, : len(ids[i])] = ids[i]
            mask[row, : len(ids[i])] = 1
        handle = model["model"].base_model.register_forward_hook(hook) if stats else None
        try:
            with torch.inference_mode():
                result = model["model"](
                    input_ids=torch.from_numpy(input_ids).to(model["device"]),
                    attention_mask=torch.from_numpy(mask).to(model["device"]),
                )
        finally:
            if handle is not None:
                handle.remove()
        out[chunk] = result.logits.float().cpu().numpy()
        if score is not None:
            cls = captured["cls"].float().cpu().numpy()
            score[chunk] = -_distance(stats, cls, model["calibration"]["oos_scorer"])
    return out, score


def decide(
    logits: np.ndarray,
    labels: list[str],
    calibration: dict[str, Any] | None,
    oos_score: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """``intentkit.inference.decision.apply`` with rejection on: ``{"predicted_class",
    "confidence"}``s."""
    cal = calibration or {}
    # float64 like apply(): a confidence exactly on the threshold must be answered the same way.
    z = np.asarray(logits, dtype=np.float64) / float(cal.get("temperature") or 1.0)
    z = z - z.max(axis=1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=1, keepdims=True)
    top = probs.argmax(axis=1)
    conf = probs[np.arange(len(top)), top]
    answered = [labels[i] for i in top]
    feature = (cal.get("oos_scorer") or "softmax") != "softmax"
    rejected = np.zeros(len(top), dtype=bool)
    if calibration:
        if not feature:
            rejected = conf < float(cal.get("threshold") or 0.0)
        elif cal.get("oos_threshold") is not None:
            rejected = oos_score < float(cal["oos_threshold"])
        oos_label = cal.get("oos_label")
        if oos_label is not None and oos_label in labels:
            rejected |= top == labels.index(oos_label)
        for i in np.nonzero(rejected)[0]:
            answered[i] = str(cal.get("reject_label") or "out_of_scope")
    platt = cal.get("oos_platt")
    if feature and platt:  # decision.oos_probability: P(oos | distance) at the design prior
        prior = float(platt["prior"])
        x = float(platt["a"]) * -oos_score + float(platt["b"]) + np.log(prior / (1.0 - prior))
        q = 1.0 / (1.0 + np.exp(-x))
        conf = np.where(rejected, q, (1.0 - q) * conf)
    return [{"predicted_class": answered[i], "confidence": float(conf[i])} for i in range(len(top))]


def predict_fn(data: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """Classify ``data["texts"]``; keep the request's shape for :func:`output_fn`."""
    logits, score = _logits(model, data["texts"])
    answers = decide(logits, model["labels"], model["calibration"], score)
    return {"answers": answers, "single": data["single"], "jsonlines": data["jsonlines"]}


def output_fn(prediction: dict[str, Any], accept: str) -> str:
    """One answer for one text, a list for a list, JSON Lines for JSON Lines (or when asked)."""
    answers = prediction["answers"]
    if prediction["jsonlines"] or _media_type(accept) in JSONLINES_TYPES:
        return "".join(json.dumps(a) + "\n" for a in answers)
    return json.dumps(answers[0] if prediction["single"] else answers)
