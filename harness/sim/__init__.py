"""Simulated accelerators: an analytical systolic-array model and its ONNX graph mapping."""
