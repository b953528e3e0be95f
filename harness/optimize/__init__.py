"""Artifacts: export to ONNX, optimization variants, and the content-addressed cache."""
