"""synthmatch.models: the shipped default model (default.onnx; default.pt2, the torch.export
program the cuda backend runs; default.pt, its weights to fine-tune from), as package
data (read with importlib.resources: training.match.DEFAULT_MODEL)."""
