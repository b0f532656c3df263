"""SmoothQuant scale migration: same fp32 function, flatter activations, closer int8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from intentkit.export.smoothquant import linear_groups, smooth  # noqa: E402


def _graph(path: Path, rng: np.random.Generator) -> None:
    """x (n, 16) -> [x @ A, x @ B] (two projections of one activation, like Q and K) -> sum."""
    from onnx import TensorProto, helper, numpy_helper

    a = numpy_helper.from_array(rng.normal(0, 0.2, (16, 8)).astype(np.float32), "A")
    b = numpy_helper.from_array(rng.normal(0, 0.2, (16, 8)).astype(np.float32), "B")
    nodes = [
        helper.make_node("Relu", ["x"], ["h"], "relu"),
        helper.make_node("MatMul", ["h", "A"], ["ya"], "proj_a"),
        helper.make_node("MatMul", ["h", "B"], ["yb"], "proj_b"),
        helper.make_node("Add", ["ya", "yb"], ["y"], "sum"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])],
        [a, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _feeds(rng: np.random.Generator, n: int = 64) -> list[dict[str, np.ndarray]]:
    x = np.abs(rng.normal(0, 1, (n, 16))).astype(np.float32)
    x[:, 3] *= 80.0  # one outlier channel, as fine-tuned encoders have
    return [{"x": x[i : i + 16]} for i in range(0, n, 16)]


def _run(path: Path, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(["y"], f)[0] for f in feeds])


def test_migration_keeps_the_function_and_brings_int8_closer(tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    src, dst = tmp_path / "m.onnx", tmp_path / "s.onnx"
    _graph(src, rng)
    calib, held_out = _feeds(rng), _feeds(rng)
    info = smooth(src, dst, calib, alpha=0.8)
    assert info == {"method": "smoothquant", "alpha": 0.8, "activations_scaled": 1}
    ref = _run(src, held_out)
    np.testing.assert_allclose(_run(dst, held_out), ref, rtol=1e-4, atol=1e-4)

    errors = {}
    for name, graph in (("plain", src), ("smoothed", dst)):
        q = tmp_path / f"{name}.int8.onnx"
        quantize_dynamic(str(graph), str(q), per_channel=True, weight_type=QuantType.QInt8)
        errors[name] = float(np.abs(_run(q, held_out) - ref).mean())
    assert errors["smoothed"] < 0.7 * errors["plain"], errors  # measured: 0.09 vs 0.17


def test_groups_share_one_scale_and_skip_tied_weights(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    src = tmp_path / "m.onnx"
    _graph(src, rng)
    model = onnx.load(str(src))
    assert {x: [n.name for n in v] for x, v in linear_groups(model).items()} == {
        "h": ["proj_a", "proj_b"]
    }
    model.graph.node[2].input[1] = "A"  # both projections now read the same (tied) weight
    assert linear_groups(model) == {}


def test_no_calibration_feeds_leaves_the_graph_as_is(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    src, dst = tmp_path / "m.onnx", tmp_path / "s.onnx"
    _graph(src, rng)
    assert smooth(src, dst, [])["activations_scaled"] == 0
    feeds = _feeds(rng)
    np.testing.assert_array_equal(_run(dst, feeds), _run(src, feeds))
