"""Run a trained artifact: the predictor, ONNX Runtime backends, int8, bulk scoring."""
