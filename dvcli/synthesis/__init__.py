"""From units and a reference to audio: the PyTorch pipeline and the ONNX Runtime backend."""
