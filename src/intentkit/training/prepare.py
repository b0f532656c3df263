"""The first phase of :func:`intentkit.training.train.train`: prepare the data.

Resolves the config, checks ``--data``/``--out``/``--resume``, splits validation off and
tokenises both splits once (fast tokenizer, batched), with a ``length`` column that the
length-grouped sampler reads. Nothing on disk changes here: every input is validated before
``--force`` touches ``out``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from intentkit.config import TrainConfig, to_dict
from intentkit.errors import ConfigError, DataError
from intentkit.training import setup
from intentkit.training.setup import rank
from intentkit.training.timing import PhaseTimer

if TYPE_CHECKING:
    from intentkit.data.dataset import PreparedDataset


@dataclass
class Run:
    """What :func:`prepare_data` hands on: the resolved run and its encoded splits."""

    cfg: TrainConfig
    run_config: dict[str, Any]  #: ``cfg`` as written into every checkpoint and the artifact
    out: Path
    checkpoint_dir: Path | None  #: ``--checkpoint-dir`` as given (None: ``out/checkpoints``)
    resume_from: Path | None  #: the checkpoint ``--resume`` continues from
    device: str
    dataset: PreparedDataset
    labels: list[str]
    train_df: Any
    val_df: Any
    oos_val: list[str]  #: val texts labelled out-of-scope that the model has no class for
    val_source: str
    tokenizer: Any
    model_config: Any
    max_length: int
    train_set: Any  #: ``datasets.Dataset`` of input_ids, labels, length
    val_set: Any  #: the same for val, length-sorted
    val_order: np.ndarray  #: row ``i`` of ``val_set`` is row ``val_order[i]`` of ``val_df``
    #: ``intentkit.json["training"]``'s objective fields, set by ``train.pair_stage``
    objective: dict[str, Any] | None = None


def prepare_data(
    data: str | Path,
    out: str | Path,
    *,
    config: TrainConfig | None,
    preset: str | None,
    force: bool,
    resume: bool,
    checkpoint_dir: str | Path | None,
    overrides: dict[str, Any],
    timer: PhaseTimer,
) -> Run:
    """Resolve the config, check the folders, split and tokenise (phases ``data``, ``tokenise``).

    Everything is validated here, before ``--force`` touches ``out``.
    """
    from datasets import Dataset

    from intentkit.data.dataset import load_prepared
    from intentkit.data.lengths import max_length_for
    from intentkit.inference.predictor import resolve_device
    from intentkit.modeling import dropout_overrides, load_config, load_tokenizer, model_max_length
    from intentkit.training import checkpoints as ck
    from intentkit.training.trainer import sort_by_length

    out = Path(out)
    ckpt_arg = Path(checkpoint_dir) if checkpoint_dir is not None else None
    cfg = setup.resolve_config(
        out, config=config, preset=preset, resume=resume, overrides=overrides,
        checkpoint_dir=ckpt_arg,
    )  # fmt: skip
    ds = load_prepared(data)  # validates the folder before we touch --out
    device = resolve_device(cfg.device)
    resume_from = ck.check_run_out(
        out, force=force, resume=resume, rank=rank(), checkpoint_dir=ckpt_arg
    )
    labels = list(ds.labels)
    label2id = {name: i for i, name in enumerate(labels)}
    unknown = sorted(set(ds.train["label"]) - set(labels))
    if unknown:
        raise DataError(f"--data {ds.path}: train labels missing from labels.json: {unknown}")
    train_df, val_df, oos_val, val_source = setup.validation_split(ds, cfg, labels)
    timer.mark("data")

    tokenizer = load_tokenizer(cfg.model)
    model_config = load_config(cfg.model)
    limit = model_max_length(tokenizer, model_config)
    if cfg.max_length is not None and cfg.max_length > limit:
        raise ConfigError(f"--max-length {cfg.max_length} is above the model's limit {limit}")
    max_length = cfg.max_length or max_length_for(
        ds.path, train_df["text"].tolist(), tokenizer, limit
    )
    tokenizer.model_max_length = max_length  # saved with the artifact: serving truncates the same
    for key, value in dropout_overrides(model_config, cfg.dropout).items():
        setattr(model_config, key, value)
    model_config.num_labels = len(labels)
    model_config.id2label = dict(enumerate(labels))
    model_config.label2id = label2id

    def encode(frame: Any) -> Any:
        ids = tokenizer(frame["text"].tolist(), truncation=True, max_length=max_length)["input_ids"]
        return Dataset.from_dict(
            {
                "input_ids": ids,
                "labels": [label2id[x] for x in frame["label"]],
                "length": [len(x) for x in ids],  # read by the length-grouped sampler
            }
        )

    train_set = encode(train_df)
    # Length-sorted like the Predictor's batches: the best evaluation's logits are then the
    # calibration's, and shorter rows share batches (less padding).
    val_set, val_order = sort_by_length(encode(val_df))
    timer.mark("tokenise")
    if len(val_set) == 0:
        raise DataError(f"--data {ds.path}: the validation split is empty; raise --val-size")
    return Run(
        cfg=cfg, run_config=to_dict(cfg), out=out, checkpoint_dir=ckpt_arg,
        resume_from=resume_from, device=device, dataset=ds, labels=labels, train_df=train_df,
        val_df=val_df, oos_val=oos_val, val_source=val_source, tokenizer=tokenizer,
        model_config=model_config, max_length=max_length, train_set=train_set,
        val_set=val_set, val_order=val_order,
    )  # fmt: skip
