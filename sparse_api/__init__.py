"""phalanx.sparse (torch.sparse): what runs on sparse COO tensors beyond their methods.

The tensors themselves, their construction and their operations live in
`phalanx/tensor/sparse_coo.py`."""
from ..tensor.sparse_coo import (SparseTensor, addmm, check_sparse_tensor_invariants,
                                 log_softmax, softmax)
from ..tensor.sparse_coo import mm as _mm, sparse_sum as sum  # noqa: A001  (torch.sparse.sum)

__all__ = ["addmm", "check_sparse_tensor_invariants", "log_softmax", "mm", "softmax", "sum"]


def mm(mat1, mat2, reduce="sum"):
    """mat1 @ mat2 with mat1 sparse COO (and mat2 dense or sparse); gradients reach both.
    PyTorch takes reduce='mean'/'amax'/'amin' for CSR matrices only."""
    if reduce != "sum":
        raise NotImplementedError(f"sparse.mm: reduce={reduce!r} needs a CSR matrix in PyTorch "
                                  f"too; Phalanx has COO only (reduce='sum')")
    if type(mat1) is not SparseTensor:
        raise RuntimeError("sparse.mm: mat1 must be a sparse COO tensor (use phalanx.mm for "
                           "dense matrices)")
    return _mm(mat1, mat2)
