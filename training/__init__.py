"""Offline training: train, evaluate, export to ONNX, track in MLflow, gate, publish."""
