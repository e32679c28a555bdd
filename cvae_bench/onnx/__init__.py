"""The ONNX pipeline: the one interface, export, the check against the framework, variants, pictures."""
