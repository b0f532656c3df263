"""An ONNX Runtime CPU session over an exported graph (:mod:`intentkit.export.onnx_graph`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class OnnxRunner:
    """An ONNX Runtime CPU session: ``runner(input_ids, attention_mask) -> logits`` (numpy);
    :meth:`outputs` gives the CLS features of the same pass too.

    ``session.run`` is thread-safe, so the micro-batcher's worker thread and local callers may
    share one runner.
    """

    def __init__(self, path: str | Path, *, threads: int | None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3  # warnings about unused initializers are noise here
        # Idle pool threads must not spin: in a server they would burn the cores that the event
        # loop and tokenizer need between batches (MiniLM at c=8: 624 vs 465 req/s; RESULTS.md).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.has_cls = "cls" in {o.name for o in self.session.get_outputs()}

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Logits (rows, labels) as float32."""
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return np.asarray(self.session.run(["logits"], feeds)[0], dtype=np.float32)

    def outputs(
        self, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(logits, cls)`` float32 of one run; cls is None for a graph exported without it."""
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if not self.has_cls:
            return self(input_ids, attention_mask), None
        logits, cls = self.session.run(["logits", "cls"], feeds)
        return np.asarray(logits, np.float32), np.asarray(cls, np.float32)
