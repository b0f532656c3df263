"""SmoothQuant-style scale migration on the fp32 ONNX graph, before dynamic int8 quantisation.

Dynamic int8 (:mod:`intentkit.export.quantize`) quantises each MatMul's activation with one
range per batch. A few activation channels of a fine-tuned encoder are tens of times larger than
the rest, so that one range spends most of the 256 levels on them and rounds the others coarsely.
SmoothQuant (Xiao et al. 2023, https://arxiv.org/abs/2211.10438) divides every input channel j of
a linear layer by ``s_j = max|X_j| ** alpha / max|W_j| ** (1 - alpha)`` and multiplies row j of
its weight by the same ``s_j``: ``(X / s) @ (s * W) == X @ W`` exactly in fp32, while the
activation's range flattens and the per-channel weight scales absorb the difference.

Here the division is an explicit ``Mul`` node per activation (an elementwise product, shared by
the Q/K/V projections that read the same tensor), because the activations also feed residual
connections and cannot be folded into the preceding LayerNorm. ``max|X_j|`` is measured by
running the fp32 graph on training texts. ONNX Runtime has no dynamic-quantisation SmoothQuant of
its own (its ``SmoothQuant`` option needs Intel Neural Compressor and static QDQ graphs, which
measured worse here), hence this small graph pass. ``bench/RESULTS.md`` §6 has the measurement.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

#: Migration strength: 0.8 kept 99.8 % of fp32's answers on CLINC150 test (0.5: 98.7 %, plain
#: per-channel: 99.2 %); swept on MiniLM, bench/RESULTS.md §6.
ALPHA = 0.8
#: Training texts whose activations set ``max|X_j|`` (a random sample, fixed seed).
CALIBRATION_TEXTS = 512
_S_BOUNDS = (1e-3, 1e3)  # a dead channel (max 0) must not turn into an inf scale


def linear_groups(model: Any) -> dict[str, list[Any]]:
    """MatMul nodes with a 2-D constant weight, grouped by the activation tensor they read.

    A weight that any other node also reads (tied weights) is left out with its whole group:
    scaling it would change that other use.
    """
    inits = {t.name: t for t in model.graph.initializer}
    uses = Counter(name for node in model.graph.node for name in node.input)
    groups: dict[str, list[Any]] = {}
    skipped: set[str] = set()
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits:
            continue
        if len(inits[node.input[1]].dims) != 2 or uses[node.input[1]] != 1:
            skipped.add(node.input[0])
            continue
        groups.setdefault(node.input[0], []).append(node)
    return {x: nodes for x, nodes in groups.items() if x not in skipped}


def activation_absmax(
    model: Any, names: list[str], feeds: Iterable[dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Per-channel ``max|x|`` of the tensors ``names`` over every feed of the fp32 ``model``."""
    import onnx
    import onnxruntime as ort

    scratch = onnx.ModelProto()
    scratch.CopyFrom(model)
    for name in names:  # expose the intermediate tensors as extra outputs of a scratch copy
        scratch.graph.output.append(onnx.helper.make_tensor_value_info(name, 1, None))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(
        scratch.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    peak: dict[str, np.ndarray] = {}
    for feed in feeds:
        for name, value in zip(names, session.run(names, feed), strict=True):
            cur = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            peak[name] = cur if name not in peak else np.maximum(peak[name], cur)
    return peak


def smooth(
    src: Path, dst: Path, feeds: Iterable[dict[str, np.ndarray]], *, alpha: float = ALPHA
) -> dict[str, Any]:
    """Write ``src`` with scales migrated from activations to weights to ``dst``; return a summary.

    The fp32 graph at ``dst`` computes the same function as ``src`` (up to float rounding);
    only its int8 quantisation changes. With no feeds nothing is migrated and ``dst`` is a copy.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    groups = linear_groups(model)
    peak = activation_absmax(model, list(groups), feeds)
    inits = {t.name: t for t in model.graph.initializer}
    inserted = []
    for i, (x, nodes) in enumerate(groups.items()):
        if x not in peak:
            continue
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        w_peak = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        s = np.maximum(peak[x], 1e-8) ** alpha / np.maximum(w_peak, 1e-8) ** (1 - alpha)
        s = np.clip(s, *_S_BOUNDS).astype(np.float32)
        inv = numpy_helper.from_array((1.0 / s).astype(np.float32), f"smoothquant/inv_{i}")
        model.graph.initializer.append(inv)
        scaled = f"smoothquant/x_{i}"
        inserted.append(onnx.helper.make_node("Mul", [x, inv.name], [scaled], f"smoothquant/{i}"))
        for node, w in zip(nodes, weights, strict=True):
            inits[node.input[1]].CopyFrom(
                numpy_helper.from_array((w * s[:, None]).astype(np.float32), node.input[1])
            )
            node.input[0] = scaled
    _insert_after_producers(model, inserted)
    onnx.save(model, str(dst))
    return {"method": "smoothquant", "alpha": alpha, "activations_scaled": len(inserted)}


def _insert_after_producers(model: Any, new_nodes: list[Any]) -> None:
    """Place each new node right after the node producing its input (graph order is topological)."""
    nodes = list(model.graph.node)
    for new in new_nodes:
        where = next(
            (i + 1 for i, n in enumerate(nodes) if new.input[0] in n.output), 0
        )  # a graph input has no producer: first
        nodes.insert(where, new)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
