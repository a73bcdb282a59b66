"""synthmatch.models: the shipped default model (default.onnx and its default.pt weights), as package
data (read with importlib.resources: training.match.DEFAULT_MODEL)."""
