"""`phalanx.onnx`: export a model to ONNX, to run it with ONNX Runtime (PyTorch's `torch.onnx`).

    px.onnx.export(model, (x,), "model.onnx", input_names=["x"], output_names=["y"],
                   dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})

The exporter traces the eager ops of one forward call at the dispatch point every op goes
through (`autograd/dispatch.py`) and translates each op with the table in `ops/`. It needs the
`onnx` package (`pip install 'phalanx[onnx]'`). This folder is `onnx_export/` (pyproject.toml
maps it to `phalanx.onnx`): a folder named `onnx/` at the repository root would shadow the
`onnx` package for anything run from the root.
"""
from .assemble import exportable_ops
from .errors import OnnxExporterError, UnsupportedOperatorError
from .export import TrainingMode, export

__all__ = ["export", "exportable_ops", "TrainingMode", "OnnxExporterError",
           "UnsupportedOperatorError"]
