"""`phalanx.nn.attention.bias` (torch.nn.attention.bias): causal masks for queries and keys
of different lengths, passed to `scaled_dot_product_attention` as its `attn_mask`.

UPPER_LEFT is `is_causal`'s mask (query i sees keys 0..i); LOWER_RIGHT aligns the last query
with the last key (query i sees keys 0..i + S - L), what decoding with a cache of S - L
earlier keys needs."""
import enum

import numpy as np

from ...tensor import Tensor
from ...tensor.backend import array_module, module_for_device

__all__ = ["CausalBias", "CausalVariant", "causal_lower_right", "causal_upper_left"]


class CausalVariant(enum.IntEnum):
    UPPER_LEFT = 1
    LOWER_RIGHT = 2


class CausalBias:
    """A causal mask of `seq_len_q` queries over `seq_len_kv` keys, made when used."""

    def __init__(self, variant, seq_len_q, seq_len_kv):
        if not isinstance(variant, CausalVariant):
            raise ValueError(f"CausalBias: variant must be a CausalVariant, got {variant!r}")
        self.variant, self.seq_len_q, self.seq_len_kv = variant, seq_len_q, seq_len_kv
        if variant is CausalVariant.LOWER_RIGHT and seq_len_q > seq_len_kv:
            import warnings
            warnings.warn("Lower right causal bias will produce NaNs in the output when "
                          "seq_len_q > seq_len_kv!", stacklevel=2)

    def _materialize(self, device=None):
        """The boolean mask (True: attend), (seq_len_q, seq_len_kv)."""
        xp = np if device is None else module_for_device(device)
        diagonal = 0 if self.variant is CausalVariant.UPPER_LEFT else \
            self.seq_len_kv - self.seq_len_q
        return Tensor._make(xp.tril(xp.ones((self.seq_len_q, self.seq_len_kv), dtype=bool),
                                    diagonal))

    def _mask_like(self, query):
        return Tensor._make(array_module(query._data).asarray(self._materialize()._data))

    def __repr__(self):
        return repr(self._materialize())


def causal_upper_left(*size):
    """The causal mask aligned at the upper left (`is_causal`'s), for size (L, S)."""
    if len(size) != 2:
        raise AssertionError("causal_upper_left only supports 2D tensors")
    return CausalBias(CausalVariant.UPPER_LEFT, size[0], size[1])


def causal_lower_right(*size):
    """The causal mask aligned at the lower right, for size (L, S)."""
    if len(size) != 2:
        raise AssertionError("causal_lower_right only supports 2D tensors")
    return CausalBias(CausalVariant.LOWER_RIGHT, size[0], size[1])
