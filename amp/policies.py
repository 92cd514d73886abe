"""Which ops autocast casts, and to what: PyTorch's lists (aten/src/ATen/autocast_mode.cpp)
mapped onto Phalanx's Functions, one table per device type.

tan and reciprocal, on CUDA's float32 list, are composites here (sin/cos, Div) and so are not
listed. Policies, as PyTorch names them:
- "lower": floating inputs (not float64) are cast to the autocast dtype (matmul, linear, conv).
- "fp32": floating inputs (not float64) are cast to float32 (losses, and on CUDA exp/log/pow,
  softmax, sums, norms).
- "promote": floating inputs are cast to the widest floating dtype among them (cat, stack).
- "banned": autocast refuses the op (binary_cross_entropy on CUDA), naming the safe one.
An entry may be a function of the op's arguments when one Function serves several PyTorch ops
(`_Standardize` is layer_norm and group_norm, fp32 on CUDA, and batch_norm, which is not).

Ops missing from a table run on whatever dtypes reach them. Composite ops (mse_loss, l1_loss,
huber_loss, kl_div, binary_cross_entropy_with_logits, prelu, scaled_dot_product_attention, …)
are built from primitives and follow their primitives' policies: with a low-precision
prediction and a float32 target a loss promotes to float32 as PyTorch's does, but a loss of two
low-precision tensors stays low where PyTorch's runs in float32, and prelu with a float32
weight is float32 where PyTorch's is low. `dot` is `Matmul` and `bilinear` is `Einsum` here,
so both are lowered (PyTorch leaves them alone on the CPU and promotes them on CUDA).
"""
import importlib

# (module, Function name) -> policy; names that a module lacks are skipped
# einsum is on CUDA's list; on the CPU PyTorch's einsum runs through bmm, which is on the list
# scaled_dot_product_attention is on both lists: the fused attention Functions run whole in
# the low precision (their softmax accumulates in float32, as PyTorch's kernels do)
_COMMON_LOWER = [("nn.functional.linear", "Linear"), ("tensor.ops.linalg", "Matmul"),
                 ("tensor.ops.linalg", "Einsum"),
                 ("nn.functional.conv", "_Conv"), ("nn.functional.conv", "_ConvT"),
                 ("nn.functional.attention", "_Attention"),
                 ("nn.functional.attention", "_SelfAttention")]

_CPU = {
    "lower": _COMMON_LOWER,
    "fp32": [("nn.functional.loss", "CrossEntropy"),
             ("nn.functional.loss", "BinaryCrossEntropy"),
             ("tensor.ops.reduction", "Prod")],
    "promote": [("tensor.ops.shape", "Cat"), ("tensor.ops.shape", "Stack")],
}

_CUDA = {
    "lower": _COMMON_LOWER,
    "fp32": [("tensor.ops.elementwise", n) for n in
             ("Exp", "Log", "Log1p", "Expm1", "Rsqrt", "Pow", "Softplus")] +
            [("tensor.ops.mathfuncs", n) for n in ("Acos", "Asin", "Cosh", "Sinh", "Erfinv")] +
            [("tensor.ops.reduction", n) for n in
             ("Logsumexp", "Softmax", "LogSoftmax", "Prod", "Cumsum", "VectorNorm")] +
            [("nn.functional.loss", "CrossEntropy"),
             ("nn.functional.fused_normalization", "FusedLayerNorm")],
    "promote": [("tensor.ops.shape", "Cat"), ("tensor.ops.shape", "Stack"),
                ("tensor.ops.mathfuncs", "Atan2")],
    "banned": [("nn.functional.loss", "BinaryCrossEntropy")],
}


def _sum_policy(args):
    # Sum.apply(input, dim, keepdim, dtype): an explicit dtype wins (fp32_set_opt_dtype)
    return "fp32" if len(args) < 4 or args[3] is None else None


def _standardize_policy(args):
    # _Standardize.apply(input, axes, eps[, stats]): batch_norm passes its running stats
    return "fp32" if len(args) < 4 else None


def _scatter_policy(args):
    # Scatter.apply(input, dim, index, src, add): scatter_add promotes, scatter does not
    return "promote" if len(args) > 4 and args[4] else None


_CUDA_BY_ARGS = [("tensor.ops.reduction", "Sum", _sum_policy),
                 ("nn.functional.normalization", "_Standardize", _standardize_policy),
                 ("tensor.ops.indexing", "Scatter", _scatter_policy)]


def function_class(module, name):
    """The Function `name` of `phalanx.<module>`, or None where this build lacks it."""
    try:
        return getattr(importlib.import_module(f"phalanx.{module}"), name, None)
    except ModuleNotFoundError:
        return None


def _resolve(table, by_args=()):
    out = {}
    for policy, entries in table.items():
        for module, name in entries:
            cls = function_class(module, name)
            if cls is not None:
                out[cls] = policy
    for module, name, fn in by_args:
        cls = function_class(module, name)
        if cls is not None:
            out[cls] = fn
    return out


_resolved = {}


def table(device_type):
    """{Function class: policy or policy-of-args} for "cpu" or "cuda" (built on first use:
    the op modules live above amp's imports)."""
    t = _resolved.get(device_type)
    if t is None:
        t = _resolved[device_type] = (_resolve(_CPU) if device_type == "cpu"
                                      else _resolve(_CUDA, _CUDA_BY_ARGS))
    return t
