"""Training objectives beside plain cross-entropy: the contrastive few-shot path and SupCon.

* ``--objective contrastive`` (:func:`contrastive_stage`, then :func:`fit_linear_head`) trains in
  three steps, chosen from measurements (Banking77, 10 rows per intent, all-MiniLM-L6-v2, seed 0,
  a logistic regression on the feature; ``bench/RESULTS.md`` §few-shot):

  1. **align**: the CLS feature is taught to be the encoder's own mean-pooled sentence embedding
     of the train texts (cosine to the frozen model's embedding). Sentence encoders are trained
     mean-pooled; their CLS token is not a sentence embedding (frozen CLS 62.1 % vs mean 85.0 %),
     but BERT's classification head and the out-of-scope scorers
     (:mod:`intentkit.inference.features`) read CLS. After aligning, CLS scores 84.9 %.
  2. **contrast**: supervised contrastive loss (:func:`supcon_loss`) on class-balanced batches
     (``PER_CLASS`` rows of each of ``batch_size // PER_CLASS`` labels), so every step scores all
     pairs of the batch, same-label pairs pulled together, the rest pushed apart (85.0 -> 85.75 %
     mean-pooled). SetFit-style ``CosineSimilarityLoss`` on 20 sampled pairs per row (its
     sentence-transformers recipe) was tried first: 83.0 %, and 725 s for those 15,400 pairs on
     2 cores, against ~240 s here: each text is encoded once per step instead of once per pair.
  3. **head**, encoder frozen (whole-model cross-entropy on a handful of rows undoes the
     geometry steps 1-2 built): where the head ends in a ``Linear`` (:func:`logits_layer`), a
     logistic regression on its input, fitted on the train rows with and without one row per label
     name (``card_arrival`` -> "card arrival"), C and the rows picked on validation
     (:func:`fit_linear_head`), and no training steps; otherwise the normal training phase on
     the head alone (:func:`freeze_encoder`) for ``--head-epochs`` at ``--head-lr``.

  The artifact is the same HF sequence classifier, so calibration, out-of-scope statistics,
  ONNX/int8, serving and ``pipeline`` loading are unchanged. Written as a plain torch loop:
  sentence-transformers (and setfit) have neither a label-batch SupCon loss nor a CLS <- mean
  alignment, and the loop is what was measured.
* ``--objective auto`` picks contrastive when the smallest class has at most
  :data:`AUTO_MAX_PER_LABEL` training rows, else ``ce``.
* ``--supcon-weight W`` (:func:`supcon_loss`): the supervised contrastive loss of Khosla et al.
  2020 (https://arxiv.org/abs/2004.11362, eq. 2, "L_out") on the batch's CLS features, added
  to cross-entropy as ``CE + W * SupCon`` by ``IntentTrainer.compute_loss``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from intentkit.errors import ConfigError
from intentkit.training.setup import model_oos_label

#: ``--objective auto``: contrastive when the smallest class has at most this many train rows.
AUTO_MAX_PER_LABEL = 32
#: Rows of one label in a contrastive batch (so each anchor has PER_CLASS - 1 positives).
PER_CLASS = 4
#: SupCon temperature tau (Khosla et al. use 0.1 for their best results).
SUPCON_TEMPERATURE = 0.1
#: Learning rate of the align step (CLS <- mean-pooled embedding).
ALIGN_LR = 5e-5


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


def contrastive_training(trainer: Any, run: Any, world_size: int) -> dict[str, Any]:
    """Steps 1-3 of ``--objective contrastive`` for ``train.pair_stage``; the record's fields.

    Steps 1-2 (:func:`contrastive_stage`) tune the encoder's CLS feature; step 3 fits a
    ``Linear`` head in closed form (:func:`fit_linear_head`: ``head.epochs`` 0, the fit phase
    is skipped), or else sets the trainer to train the head alone (encoder frozen) for
    ``--head-epochs`` at ``--head-lr``. A ``--resume`` skips steps 1-2 (the checkpoint holds
    the tuned encoder) and freezes again.
    """
    cfg, model = run.cfg, trainer.model
    if world_size > 1:
        raise ConfigError("--objective contrastive runs on one process; run it without torchrun")
    if run.resume_from is not None:
        stage: Any = "skipped on --resume: the checkpoint holds its encoder"
    else:
        stage = contrastive_stage(
            model, run.tokenizer, run.train_df, run.labels, cfg, run.max_length, run.device,
            progress=lambda line: print(f"contrastive {line}", flush=True),
        )  # fmt: skip
        head = fit_linear_head(
            model, run.tokenizer, run.train_df, run.val_df, run.labels, run.max_length,
            run.device, oos_label=model_oos_label(cfg, run.labels),
        )  # fmt: skip
        if head is not None:
            return {"contrastive": stage, "head": {**head, "epochs": 0}}
    trainable = freeze_encoder(model)
    # The head is trained by the normal fit phase with its own budget; the optimizer is
    # rebuilt from these arguments over the trainable (head) parameters only.
    trainer.args.learning_rate = cfg.head_lr
    trainer.args.num_train_epochs = cfg.head_epochs
    trainer.optimizer = None
    return {"contrastive": stage, "head": {
        "fit": "cross-entropy, encoder frozen", "epochs": cfg.head_epochs, "lr": cfg.head_lr,
        "trainable": trainable}}  # fmt: skip


def balanced_batches(
    label_ids: Any, batch_size: int, n_batches: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """``n_batches`` row-index arrays: ``PER_CLASS`` rows of each of ``batch_size // PER_CLASS``
    distinct labels (all labels when there are fewer; a label's rows without replacement,
    all of them when it has fewer)."""
    y = np.asarray(label_ids, dtype=np.int64)
    by_label = [np.flatnonzero(y == c) for c in np.unique(y)]
    n_labels = min(len(by_label), max(2, batch_size // PER_CLASS))
    batches = []
    for _ in range(n_batches):
        chosen = rng.choice(len(by_label), size=n_labels, replace=False)
        rows = [rng.choice(by_label[c], size=min(PER_CLASS, len(by_label[c])), replace=False)
                for c in chosen]  # fmt: skip
        batches.append(np.concatenate(rows))
    return batches


def contrastive_stage(
    model: Any, tokenizer: Any, train_df: Any, labels: list[str], cfg: Any, max_length: int,
    device: str, progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Steps 1-2 of ``--objective contrastive`` on ``model``'s encoder, in place; its record.

    ``cfg.pair_epochs`` epochs of each step (an epoch: as many batches as cover the train rows
    once) at ``cfg.pair_lr`` for the contrast step; ``progress`` gets one line per epoch.
    """
    import torch

    if len(labels) < 2:
        raise ConfigError("--objective contrastive needs at least two labels in train")
    started = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    label2id = {name: i for i, name in enumerate(labels)}
    texts = train_df["text"].tolist()
    y = np.asarray([label2id[x] for x in train_df["label"]], dtype=np.int64)
    encoder = model.base_model
    batch = max(2 * PER_CLASS, cfg.batch_size)
    steps = max(1, math.ceil(len(texts) / batch))
    epochs = math.ceil(cfg.pair_epochs)  # validated >= 1

    def encode(idx: np.ndarray) -> tuple[Any, Any]:
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt").to(device)  # fmt: skip
        hidden = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])[0]
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return hidden[:, 0], (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)

    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():  # the teacher: the encoder's own mean-pooled embedding, before tuning
        order = np.arange(len(texts))
        target = torch.cat([encode(order[i : i + 128])[1] for i in range(0, len(texts), 128)])
        target = torch.nn.functional.normalize(target.float(), dim=1)
    encoder.train()
    record: dict[str, Any] = {"epochs": epochs, "batch_size": batch, "per_class": PER_CLASS}

    def run_step(name: str, lr: float, loss_of: Callable[[np.ndarray], Any],
                 batches: Callable[[], list[np.ndarray]]) -> None:  # fmt: skip
        params = [p for p in encoder.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        total = epochs * steps
        warm = max(1, int(0.1 * total))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (total - s) / total)
        )
        losses = []
        for epoch in range(epochs):
            for idx in batches():
                loss = loss_of(idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
            if progress is not None:
                progress(f"{name} epoch {epoch + 1}/{epochs}: loss {np.mean(losses[-steps:]):.3f}")
        record[name] = {"lr": lr, "steps": len(losses), "first_loss": round(losses[0], 4),
                        "last_epoch_loss": round(float(np.mean(losses[-steps:])), 4)}  # fmt: skip

    def align_loss(idx: np.ndarray) -> Any:
        cls, _ = encode(idx)
        z = torch.nn.functional.normalize(cls.float(), dim=1)
        return (1 - (z * target[torch.as_tensor(idx, device=z.device)]).sum(1)).mean()

    def contrast_loss(idx: np.ndarray) -> Any:
        cls, _ = encode(idx)
        return supcon_loss(cls, torch.as_tensor(y[idx], device=cls.device))

    run_step("align", ALIGN_LR, align_loss,
             lambda: np.array_split(rng.permutation(len(texts)), steps))  # fmt: skip
    run_step("contrast", cfg.pair_lr, contrast_loss,
             lambda: balanced_batches(y, batch, steps, rng))  # fmt: skip
    encoder.train(was_training)
    record["loss"] = "align: 1 - cos(CLS, frozen mean-pooled); contrast: SupCon (tau 0.1)"
    record["pooling"] = "cls"
    record["seconds"] = round(time.perf_counter() - started, 2)
    return record


#: Inverse L2 strengths tried for the logistic-regression head; the best on validation wins.
HEAD_C_GRID = (0.1, 1.0, 10.0, 100.0)
#: The head's two sets of training rows, compared on validation (:func:`fit_linear_head`).
TRAIN_ROWS, WITH_NAMES = "train rows", "train rows + label names"


def label_name_text(label: str) -> str:
    """A label's name read as a short text: ``card_arrival`` and ``CardArrival`` -> ``card
    arrival``; "" when it has no letters (``17``), so it adds no row."""
    words = re.split(r"[\W_]+|(?<=[a-z])(?=[A-Z])", label)
    text = " ".join(w for w in words if w).lower()
    return text if re.search(r"[a-z]", text) else ""


def fit_linear_head(
    model: Any, tokenizer: Any, train_df: Any, val_df: Any, labels: list[str], max_length: int,
    device: str, oos_label: str | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    """Step 3 where the head ends in a ``Linear`` (:func:`logits_layer`): a logistic regression
    on that layer's input.

    The layer's input (BERT's pooler output, ModernBERT's head output, the dense + tanh output
    of RoBERTa's and MPNet's heads...) is read by a forward pre-hook with the model in eval
    mode. scikit-learn's ``LogisticRegression`` is fitted for each C of :data:`HEAD_C_GRID` on
    the train rows, and again on the train rows plus one row per label whose text is the
    label's own name (:func:`label_name_text`; not the model's out-of-scope class): the name is
    a description of the intent the user already wrote. The fit with the best validation
    accuracy (ties: with names, then the smaller C) is written into the layer's
    ``weight``/``bias``. Measured (``bench/fewshot.py``, Banking77, three seeds,
    official test set): 77.5 % -> 79.1 % with the name rows at 5 rows per intent, 84.1 % ->
    84.8 % at 10; a CE-trained head on the same features overfits (80.9-82.4 % vs 84.0 % at 10
    rows per intent, seed 0). Returns its record, or None when the head ends in something else
    (:func:`logits_layer`): then the caller trains the head instead.
    """
    import torch
    from sklearn.linear_model import LogisticRegression

    found = logits_layer(model)
    if found is None:
        return None
    layer_name, classifier = found
    started = time.perf_counter()
    label2id = {name: i for i, name in enumerate(labels)}
    names = {lab: label_name_text(lab) for lab in labels if lab != oos_label}
    names = {lab: text for lab, text in names.items() if text}
    captured: list[Any] = []
    handle = classifier.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    was_training = model.training
    model.eval()

    def features(texts: list[str]) -> np.ndarray:
        captured.clear()
        with torch.no_grad():
            for i in range(0, len(texts), 128):
                enc = tokenizer(texts[i : i + 128], padding=True, truncation=True,
                                max_length=max_length, return_tensors="pt").to(device)  # fmt: skip
                model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return torch.cat(captured).float().cpu().numpy()

    try:
        x_train, x_val = features(train_df["text"].tolist()), features(val_df["text"].tolist())
        x_names = features(list(names.values())) if names else None
    finally:
        handle.remove()
        model.train(was_training)
    y_train = np.asarray([label2id[x] for x in train_df["label"]])
    y_val = np.asarray([label2id.get(x, -1) for x in val_df["label"]])
    # The names come first, so a validation tie keeps them: with 5-20 val rows per intent ties
    # are common, and on held-out pool rows (bench/head_rule.py) keeping the names on a tie was
    # better in 2 of 18 few-shot samples and worse in none.
    row_sets = {}
    if names:
        row_sets[WITH_NAMES] = (
            np.vstack([x_train, x_names]),
            np.concatenate([y_train, [label2id[lab] for lab in names]]),
        )
    row_sets[TRAIN_ROWS] = (x_train, y_train)
    scores: dict[str, dict[str, float]] = {}
    best = None
    for rows, (x, y) in row_sets.items():
        scores[rows] = {}
        for c in HEAD_C_GRID:
            clf = LogisticRegression(C=c, max_iter=2000).fit(x, y)
            acc = float((clf.predict(x_val) == y_val).mean()) if len(y_val) else 0.0
            scores[rows][f"{c:g}"] = round(acc, 4)
            if best is None or acc > best[0]:  # strictly better: ties keep the earlier fit
                best = (acc, rows, c, clf)
    assert best is not None
    acc, rows, c, clf = best
    write_linear(classifier, clf, len(labels), x_train.shape[1])
    return {
        "fit": "logistic regression (scikit-learn) on the classifier's input, encoder frozen",
        "layer": layer_name,
        "rows": rows,
        "C": c,
        "val_accuracy": round(acc, 4),
        "val_accuracy_by_rows_and_C": scores,
        "label_name_rows": len(names),
        "seconds": round(time.perf_counter() - started, 2),
    }


def logits_layer(model: Any) -> tuple[str, Any] | None:
    """``(name, layer)`` of the ``Linear`` that makes a sequence classifier's logits:
    ``classifier`` (BERT, ModernBERT, DeBERTa, DistilBERT) or ``classifier.out_proj`` (the
    dense -> out_proj heads of RoBERTa, MPNet, ELECTRA); None for any other head."""
    import torch

    classifier = getattr(model, "classifier", None)
    out_proj = getattr(classifier, "out_proj", None)
    for name, layer in (("classifier", classifier), ("classifier.out_proj", out_proj)):
        if isinstance(layer, torch.nn.Linear):
            return name, layer
    return None


def write_linear(classifier: Any, clf: Any, n_labels: int, dim: int) -> None:
    """Copy a fitted scikit-learn ``LogisticRegression`` into a torch ``Linear`` classifier; a
    label without a train row gets bias -1e4 (never the answer)."""
    import torch

    weight = np.zeros((n_labels, dim), dtype=np.float32)
    bias = np.full(n_labels, -1e4, dtype=np.float32)
    if len(clf.classes_) == 2:  # one coefficient row: logit difference split in two
        rows = [-clf.coef_[0] / 2, clf.coef_[0] / 2]
        biases = [-clf.intercept_[0] / 2, clf.intercept_[0] / 2]
    else:
        rows, biases = list(clf.coef_), list(clf.intercept_)
    for cls_id, row, b in zip(clf.classes_, rows, biases, strict=True):
        weight[cls_id], bias[cls_id] = row, b
    with torch.no_grad():
        classifier.weight.copy_(torch.from_numpy(weight))
        classifier.bias.copy_(torch.from_numpy(bias))


def freeze_encoder(model: Any) -> list[str]:
    """Freeze all but the classification head (step 3); return the names left trainable.

    The head is every parameter outside ``model.base_model`` (ModernBERT's ``head``, every
    model's ``classifier``) plus a pooler inside it (BERT's ``pooler.dense``).
    """
    prefix = getattr(model, "base_model_prefix", "")
    trainable = []
    for name, param in model.named_parameters():
        inside = bool(prefix) and name.startswith(prefix + ".")
        keep = not inside or ".pooler." in name
        param.requires_grad_(keep)
        if keep:
            trainable.append(name)
    if not trainable:
        raise ConfigError("--objective contrastive: the model has no classification head to train")
    return trainable


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
