"""Speech on the box: VAD, STT and TTS engines on sherpa-onnx, and the model registry."""
