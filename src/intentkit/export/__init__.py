"""Export: the fp32 ONNX graph, int8 quantisation (SmoothQuant + dynamic) and its gate."""
