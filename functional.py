"""`torch.functional`: the module PyTorch defines these top-level functions in, for code that
imports them from there."""
from . import (atleast_1d, atleast_2d, atleast_3d, block_diag, broadcast_shapes,  # noqa: F401
               broadcast_tensors, cartesian_prod, cdist, chain_matmul, einsum, istft, meshgrid,
               norm, split, stft, tensordot, unique, unique_consecutive, unravel_index)

__all__ = ["atleast_1d", "atleast_2d", "atleast_3d", "block_diag", "broadcast_shapes",
           "broadcast_tensors", "cartesian_prod", "cdist", "chain_matmul", "einsum", "istft",
           "meshgrid", "norm", "split", "stft", "tensordot", "unique", "unique_consecutive",
           "unravel_index"]
