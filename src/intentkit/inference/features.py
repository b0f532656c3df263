"""Logits and the last layer's CLS feature from one PyTorch forward pass.

The out-of-scope score (:mod:`intentkit.inference.oos`) reads ``last_hidden_state[:, 0]`` of the
encoder, before any pooler. A forward hook on ``model.base_model`` captures it during the
classifier's own forward, so any ``...ForSequenceClassification`` works (BERT, ModernBERT, ...)
without reimplementing its head, and no second pass is needed.
"""

from __future__ import annotations

from typing import Any


def forward_with_cls(model: Any, input_ids: Any, attention_mask: Any) -> tuple[Any, Any]:
    """``(logits, cls)`` torch tensors of one forward of a HF sequence classifier."""
    captured: dict[str, Any] = {}

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        # ModelOutput and tuples both index: [0] is last_hidden_state (batch, seq, hidden).
        captured["cls"] = output[0][:, 0]

    handle = model.base_model.register_forward_hook(hook)
    try:
        out = model(input_ids=input_ids, attention_mask=attention_mask)
    finally:
        handle.remove()
    return out.logits, captured["cls"]
