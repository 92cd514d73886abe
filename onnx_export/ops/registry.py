"""The translation table: phalanx op (a `Function` class) -> its emitter.

An emitter is called as `emit(b, op, *args, **kwargs)` with the op's own forward arguments
(tensors as `Value`s, sizes that follow dynamic axes as `Dim`s); it appends nodes to the graph
builder `b` that compute `op.outputs` (named `op.out(j)`).
"""
from ..builder import Value
from ..errors import UnsupportedOperatorError

EMITTERS = {}


def emits(*classes):
    """Register the decorated emitter for the Function classes given."""
    def register(emitter):
        for cls in classes:
            EMITTERS[cls] = emitter
        return emitter
    return register


class OpCall:
    """What an emitter knows about the call it translates, beyond the arguments."""

    def __init__(self, cls, index, outputs):
        self.cls, self.index, self.outputs = cls, index, outputs

    def out(self, j=0):
        return self.outputs[j].name

    def unsupported(self, why):
        return UnsupportedOperatorError(f"ONNX export of {self.cls.__name__} (op number "
                                        f"{self.index}): {why}")


def operand(b, x, dtype):
    """The graph name of a tensor or number argument, as `dtype`."""
    if isinstance(x, Value):
        return b.cast(b.use(x), x.dtype, dtype)
    return b.scalar(x, dtype)
