"""The standardisation at the heart of batch, layer and group norm (its affine part is
ordinary elementwise ops)."""
from ...nn.functional import normalization
from .registry import emits


@emits(normalization._Standardize)
def standardize(b, op, x, axes, eps, stats=None):
    dt = op.outputs[0].dtype
    axes = [a % x.ndim for a in axes]
    x = b.use(x)
    centred = b.node("Sub", [x, b.reduce("ReduceMean", x, axes, keepdims=True)])
    var = b.reduce("ReduceMean", b.node("Mul", [centred, centred]), axes, keepdims=True)
    invstd = b.node("Reciprocal", [b.node("Sqrt", [b.node("Add", [var, b.scalar(eps, dt)])])],
                    op.out(1))
    b.node("Mul", [centred, invstd], op.out(0))
