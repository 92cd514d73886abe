"""linear and bilinear (composites of matmul/einsum: their backward comes from the primitives)."""
from ...tensor import einsum


def linear(input, weight, bias=None):
    """y = input @ weight.T + bias, with weight of shape (out_features, in_features)."""
    if input.shape[-1] != weight.shape[-1]:
        raise RuntimeError(f"linear: input has {input.shape[-1]} features in its last "
                           f"dimension (shape {list(input.shape)}) but weight has shape "
                           f"{list(weight.shape)} (out_features, in_features={weight.shape[-1]})")
    if input.ndim > 2 and weight.ndim == 2:
        # one 2-D matmul instead of a batch of them (and a 2-D weight gradient, not a batch
        # of them summed afterwards)
        lead = tuple(input.shape[:-1])
        out = linear(input.reshape(-1, input.shape[-1]), weight, bias)
        return out.reshape(lead + (weight.shape[0],))
    out = input.matmul(weight.t()) if weight.ndim == 2 else input.matmul(weight)
    return out if bias is None else out + bias


def bilinear(input1, input2, weight, bias=None):
    """y_o = x1 @ weight[o] @ x2 + bias_o, with weight of shape (out, in1, in2)."""
    if input1.shape[-1] != weight.shape[1] or input2.shape[-1] != weight.shape[2]:
        raise RuntimeError(f"bilinear: inputs of shapes {list(input1.shape)} and "
                           f"{list(input2.shape)} do not match weight of shape "
                           f"{list(weight.shape)} (out_features, in1_features, in2_features)")
    lead = tuple(input1.shape[:-1])
    out = einsum("bi,oij,bj->bo", input1.reshape(-1, weight.shape[1]), weight,
                 input2.reshape(-1, weight.shape[2]))
    out = out.reshape(lead + (weight.shape[0],))
    return out if bias is None else out + bias
