"""Shape buckets for serving on CUDA: few (batch, width) shapes, each warmed once at load.

On a GPU each new input shape costs a first-call stall (kernel selection, allocator growth, and
a recompile under ``torch.compile``): on the H200 the c=1 p99 was ~90 ms against a ~20 ms p50
because batches padded to their own longest row met a new shape every few requests
(bench/RESULTS.md, GPU serving). With buckets the predictor pads the width up to a multiple of
``width_step`` (capped at the model's max length) and the batch up to one of a few sizes
(1, 2, 4, ... up to the batcher's max batch), with filler rows dropped from the output, so only
a handful of shapes exist; :func:`warm` runs one forward per reachable shape before the server
reports ready. A forward on a GPU costs about the same for 1 text as for 32, so the padding is
close to free there; on CPUs it would cost per padded token, which is why CPUs don't use it
unless asked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from intentkit.inference.padding import pad_rows

log = logging.getLogger(__name__)

#: Width multiple on CUDA: tensor-core friendly and few enough shapes (4 at max length 64).
WIDTH_STEP = 16


def batch_sizes(max_batch: int) -> tuple[int, ...]:
    """Powers of two below ``max_batch``, then ``max_batch`` itself: 1, 2, 4, ..., max_batch."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    sizes = []
    size = 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch)
    return tuple(sizes)


def widths(max_length: int, step: int = WIDTH_STEP) -> tuple[int, ...]:
    """Bucketed widths: multiples of ``step`` below ``max_length``, then ``max_length``."""
    out = list(range(step, max_length, step))
    return (*out, max_length)


def round_up(n: int, sizes: Sequence[int]) -> int:
    """The smallest of ``sizes`` (ascending) holding ``n``; ``n`` itself above the largest."""
    for size in sizes:
        if n <= size:
            return size
    return n


@dataclass(frozen=True)
class BucketPolicy:
    """Which padded shapes a predictor uses: ``widths`` and ``sizes`` ascending."""

    widths: tuple[int, ...]
    sizes: tuple[int, ...]
    max_batch_tokens: int | None = None

    @classmethod
    def for_serving(
        cls,
        max_length: int,
        max_batch_size: int,
        max_batch_tokens: int | None = None,
        step: int = WIDTH_STEP,
    ) -> BucketPolicy:
        """The policy for a server whose batcher sends at most ``max_batch_size`` rows and
        ``max_batch_tokens`` padded tokens per forward to a model truncating at ``max_length``."""
        return cls(widths(max_length, step), batch_sizes(max_batch_size), max_batch_tokens)

    def shape(self, rows: int, longest: int) -> tuple[int, int]:
        """Padded ``(batch, width)`` of a batch of ``rows`` rows whose longest has ``longest``."""
        return round_up(rows, self.sizes), round_up(longest, self.widths)

    def pad(self, rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)`` of the bucketed shape; rows past ``len(rows)`` are
        fillers (one attended pad token, so no row is fully masked) for the caller to drop."""
        n = len(rows)
        longest = max((len(r) for r in rows), default=0)
        batch, width = self.shape(n, longest)
        ids, mask = pad_rows(rows, pad_id, width=width)
        if batch == n:
            return ids, mask
        full_ids = np.full((batch, width), int(pad_id), dtype=np.int64)
        full_mask = np.zeros((batch, width), dtype=np.int64)
        full_ids[:n], full_mask[:n] = ids, mask
        full_mask[n:, 0] = 1
        return full_ids, full_mask

    def reachable(self) -> list[tuple[int, int]]:
        """Every shape a batch can pad to: ``(batch, width)`` such that some batch of more rows
        than the next smaller size, with a longest row wider than the next smaller width, fits
        ``max_batch_tokens`` (the batcher never forms larger ones, except one long text alone)."""
        shapes = []
        for i, batch in enumerate(self.sizes):
            fewest = self.sizes[i - 1] + 1 if i else 1
            for j, width in enumerate(self.widths):
                shortest = self.widths[j - 1] + 1 if j else 1
                budget = self.max_batch_tokens
                if batch == 1 or budget is None or fewest * shortest <= budget:
                    shapes.append((batch, width))
        return shapes


def enable(predictor: Any, policy: BucketPolicy | None) -> None:
    """Turn bucketed padding on (a policy) or off (None) for ``predictor``."""
    predictor.buckets = policy


def warm(predictor: Any, policy: BucketPolicy | None = None) -> int:
    """One forward (the serving path, :meth:`Predictor.forward_ids`) per reachable shape of
    ``policy`` (default: the predictor's own), largest first so the allocator grows once;
    returns the number of forwards."""
    policy = policy or getattr(predictor, "buckets", None)
    if policy is None:
        return 0
    token = int(getattr(predictor.tokenizer, "cls_token_id", None) or 1)
    shapes = sorted(policy.reachable(), key=lambda s: s[0] * s[1], reverse=True)
    t0 = time.perf_counter()
    for batch, width in shapes:
        predictor.forward_ids([[token] * width for _ in range(batch)])
    log.info("warmed %d shapes in %.1f s", len(shapes), time.perf_counter() - t0)
    return len(shapes)


def compile_model(predictor: Any, policy: BucketPolicy, mode: str = "default") -> None:
    """``torch.compile`` the predictor's model in place with static shapes (``dynamic=False``):
    one graph per bucket, so dynamo's recompile limit is raised to the number of buckets."""
    import torch._dynamo.config as dynamo_config

    if predictor.model is None:
        raise ValueError("--compile needs the PyTorch backend")
    need = len(policy.reachable()) + 8
    for name in ("recompile_limit", "cache_size_limit"):  # renamed in torch 2.6
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), need))
    predictor.model.compile(dynamic=False, mode=None if mode == "default" else mode)


def prepare_for_serving(predictor: Any, config: Any) -> BucketPolicy | None:
    """Apply ``config`` (a :class:`~intentkit.config.ServeConfig`): buckets on CUDA (or when
    ``config.buckets`` is True), ``torch.compile`` when ``config.compile`` on CUDA. Returns the
    policy (None: padding stays per batch, as on CPUs); the caller warms it in the model thread."""
    on_cuda = str(getattr(predictor, "device", "cpu")).startswith("cuda")
    if not (config.buckets if config.buckets is not None else on_cuda):
        return None
    policy = BucketPolicy.for_serving(
        predictor.max_length, config.max_batch_size, config.max_batch_tokens
    )
    enable(predictor, policy)
    if config.compile:
        if on_cuda:
            compile_model(predictor, policy, config.compile_mode)
        else:
            log.warning("--compile applies on CUDA only; serving eager on %s", predictor.device)
    return policy
