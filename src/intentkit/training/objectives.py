"""Training objectives beside plain cross-entropy: contrastive pair tuning and SupCon.

* ``--objective contrastive`` (:func:`contrastive_stage`): before the normal phases, the encoder
  inside the sequence-classification model is tuned on sentence pairs drawn from the labels,
  SetFit-style (https://arxiv.org/abs/2209.11055): same label -> cosine 1, different -> 0,
  half and half, with sentence-transformers' ``CosineSimilarityLoss`` and its Trainer. The
  pooling is **CLS**, not mean: the out-of-scope scorers (:mod:`intentkit.inference.features`)
  read ``last_hidden_state[:, 0]``, and BERT's classification head pools the same token, so
  the feature the pairs pull together is the one both read. Stage two is the usual
  cross-entropy run (whole model), so calibration and out-of-scope statistics are fitted as
  for any run and the artifact is the same HF sequence classifier.
* ``--objective auto`` picks contrastive when the smallest class has at most
  :data:`AUTO_MAX_PER_LABEL` training rows (where pair tuning is known to help: SetFit's
  8-64-shot results), else ``ce``.
* ``--supcon-weight W`` (:func:`supcon_loss`): the supervised contrastive loss of Khosla et al.
  2020 (https://arxiv.org/abs/2004.11362, eq. 2, "L_out") on the batch's CLS features, added
  to cross-entropy as ``CE + W * SupCon`` by ``IntentTrainer.compute_loss``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from intentkit.errors import ConfigError

#: ``--objective auto``: contrastive when the smallest class has at most this many train rows.
AUTO_MAX_PER_LABEL = 32
#: Sentence pairs per training row when ``--pairs`` is not given (SetFit's default draws 20
#: per row: 10 positive and 10 negative iterations).
PAIRS_PER_ROW = 20
#: SupCon temperature tau (Khosla et al. use 0.1 for their best results).
SUPCON_TEMPERATURE = 0.1


def choose_objective(objective: str, train_labels: Any) -> tuple[str, str]:
    """``(objective, reason)`` for ``--objective``: ``auto`` resolved on the train labels."""
    counts = np.unique(np.asarray(train_labels, dtype=object), return_counts=True)[1]
    smallest = int(counts.min()) if len(counts) else 0
    if objective != "auto":
        return objective, f"--objective {objective} (smallest class: {smallest} train rows)"
    if smallest <= AUTO_MAX_PER_LABEL:
        return "contrastive", (
            f"auto: smallest class has {smallest} train rows (<= {AUTO_MAX_PER_LABEL})"
        )
    return "ce", f"auto: smallest class has {smallest} train rows (> {AUTO_MAX_PER_LABEL})"


def sentence_pairs(
    label_ids: Any, n_pairs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, score)``: row indices of ``n_pairs`` pairs, half same-label (score 1), half not.

    Anchors are drawn uniformly from the rows; a positive partner is another row of the
    anchor's label (the row itself only for a one-row label), a negative one any row of another
    label. Written here because sentence-transformers has no label -> pair sampler (setfit has
    one, but would add a package that pins its own transformers range).
    """
    y = np.asarray(label_ids, dtype=np.int64)
    order = np.argsort(y, kind="stable")  # rows grouped by label
    counts = np.bincount(y)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(y), dtype=np.int64)
    rank[order] = np.arange(len(y)) - starts[y[order]]
    n_pos = n_pairs - n_pairs // 2
    a = rng.integers(len(y), size=n_pos)
    size = counts[y[a]]
    step = 1 + rng.integers(np.maximum(size - 1, 1))  # 1..size-1: never the anchor itself
    pos = order[starts[y[a]] + (rank[a] + np.where(size > 1, step, 0)) % size]
    an = rng.integers(len(y), size=n_pairs // 2)
    others = len(y) - counts[y[an]]
    if (others <= 0).any():
        raise ConfigError("--objective contrastive needs at least two labels in train")
    p = rng.integers(others)
    p = np.where(p >= starts[y[an]], p + counts[y[an]], p)  # skip the anchor's label block
    neg = order[p]
    score = np.concatenate([np.ones(n_pos), np.zeros(n_pairs // 2)]).astype(np.float32)
    return np.concatenate([a, an]), np.concatenate([pos, neg]), score


def contrastive_stage(
    model: Any, resolved_model: str, train_df: Any, labels: list[str], cfg: Any, device: str
) -> dict[str, Any]:
    """Tune ``model``'s encoder in place on label pairs (stage one); return its record.

    ``model`` is the sequence classifier; its ``base_model`` is placed inside a
    sentence-transformers ``Transformer`` module (tokenizer and settings read from
    ``resolved_model``) followed by CLS ``Pooling``, so the weights tuned here are the ones
    stage two continues from.
    """
    try:
        from sentence_transformers import (
            SentenceTransformer,
            SentenceTransformerTrainer,
            SentenceTransformerTrainingArguments,
        )
        from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError as exc:
        raise ConfigError(
            "--objective contrastive needs sentence-transformers; run: pip install "
            "'intentkit[fewshot]'"
        ) from exc
    import tempfile

    from datasets import Dataset

    class _PairTrainer(SentenceTransformerTrainer):
        def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
            """None: its callback embeds "widget examples" for a card that is never written."""

    started = time.perf_counter()
    label2id = {name: i for i, name in enumerate(labels)}
    texts = train_df["text"].tolist()
    n_pairs = cfg.pairs or PAIRS_PER_ROW * len(texts)
    a, b, score = sentence_pairs(
        [label2id[x] for x in train_df["label"]], n_pairs, np.random.default_rng(cfg.seed)
    )
    pairs = Dataset.from_dict(
        {
            "sentence1": [texts[i] for i in a],
            "sentence2": [texts[i] for i in b],
            "score": score.tolist(),
        }
    )
    encoder = Transformer(resolved_model, max_seq_length=cfg.max_length)
    encoder.model = model.base_model  # tune the classifier's own encoder, not a copy
    hidden = model.config.hidden_size
    st_model = SentenceTransformer(
        modules=[encoder, Pooling(hidden, pooling_mode="cls")], device=str(model.device)
    )
    with tempfile.TemporaryDirectory(prefix="intentkit-pairs-") as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            num_train_epochs=1,
            per_device_train_batch_size=cfg.batch_size,
            learning_rate=cfg.pair_lr,
            warmup_steps=0.1,
            weight_decay=cfg.weight_decay,
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            seed=cfg.seed,
            data_seed=cfg.seed,
            use_cpu=device == "cpu",
            logging_strategy="no",
            log_level="error",
        )
        trainer = _PairTrainer(
            model=st_model, args=args, train_dataset=pairs, loss=CosineSimilarityLoss(st_model)
        )
        result = trainer.train()
    return {
        "pairs": int(n_pairs),
        "positive_pairs": int(score.sum()),
        "steps": int(trainer.state.global_step),
        "pair_lr": cfg.pair_lr,
        "pooling": "cls",
        "loss": "CosineSimilarityLoss (sentence-transformers)",
        "train_loss": float(result.training_loss),
        "seconds": round(time.perf_counter() - started, 2),
    }


def supcon_loss(features: Any, labels: Any, temperature: float = SUPCON_TEMPERATURE) -> Any:
    """Supervised contrastive loss (Khosla et al. 2020, eq. 2) of one batch, a torch scalar.

    ``features`` (n, d) are L2-normalised here; for each anchor ``i`` with at least one other
    row of its label, ``-mean_{p in P(i)} log(exp(z_i.z_p/t) / sum_{a != i} exp(z_i.z_a/t))``;
    the result is the mean over those anchors (0 when no anchor has a positive).
    """
    import torch

    z = torch.nn.functional.normalize(features.float(), dim=1)
    sim = z @ z.T / temperature
    n = z.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))  # a != i in the denominator
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = positives.sum(dim=1)
    has = n_pos > 0
    if not has.any():
        return z.sum() * 0.0  # keeps the graph (and the device) of the batch
    per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(dim=1)[has] / n_pos[has]
    return per_anchor.mean()
