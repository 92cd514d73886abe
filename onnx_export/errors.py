"""The exporter's errors (PyTorch's names: `torch.onnx.errors`)."""


class OnnxExporterError(RuntimeError):
    """The model cannot be exported as it is; the message says why and what to change."""


class UnsupportedOperatorError(OnnxExporterError):
    """An op has no ONNX translation; the message names it."""
