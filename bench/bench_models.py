"""Model configs shared by the benchmarks (speed does not depend on weight values)."""

from __future__ import annotations

from typing import Any


def modernbert_config(tok: Any, num_labels: int, **overrides: Any) -> Any:
    """ModernBERT-base architecture (``ModernBertConfig()`` defaults) sized to ``tok``.

    There is no model hub here, so benchmarks pair random weights with the bundled MiniLM
    WordPiece tokenizer: the vocabulary (30,522 rows instead of ModernBERT's 50,368) and the
    special-token ids come from it; the embedding table is left out of every FLOP count.
    """
    from transformers import ModernBertConfig

    return ModernBertConfig(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        cls_token_id=tok.cls_token_id,
        sep_token_id=tok.sep_token_id,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        num_labels=num_labels,
        **overrides,
    )
