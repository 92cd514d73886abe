"""More of torch.linalg, composed from `linalg`'s Functions (so their gradients come free):
tensorinv and tensorsolve (inv and solve of a tensor read as a matrix) and vander."""
import math

from . import linalg
from .ops.shape import stack


def tensorinv(A, ind=2):
    """The tensor X with tensordot(X, A, ind) the identity: A of shape in + out read as an
    (prod in) x (prod out) matrix, inverted, and read back as out + in."""
    if ind <= 0:
        raise ValueError(f"linalg.tensorinv: expected a strictly positive integer for ind, "
                         f"but got {ind}")
    rows, cols = tuple(A.shape[:ind]), tuple(A.shape[ind:])
    if math.prod(rows) != math.prod(cols):
        raise RuntimeError(f"linalg.tensorinv: expected prod(A.shape[:ind]) == "
                           f"prod(A.shape[ind:]), but got {math.prod(rows)} != "
                           f"{math.prod(cols)} (A of shape {list(A.shape)}, ind={ind})")
    return linalg.inv(A.reshape(math.prod(rows), -1)).reshape(cols + rows)


def tensorsolve(A, B, dims=None):
    """X with tensordot(A, X, X.ndim) == B; `dims` moves those dims of A to the end first."""
    if dims is not None:
        dims = [d % A.ndim for d in dims]
        A = A.permute([d for d in range(A.ndim) if d not in dims] + dims)
    unknowns = tuple(A.shape[B.ndim:])
    if tuple(A.shape[:B.ndim]) != tuple(B.shape) or math.prod(unknowns) != B.numel():
        raise RuntimeError(f"linalg.tensorsolve: expected A's leading dims to be B's shape "
                           f"{list(B.shape)} and its trailing dims to hold as many elements, "
                           f"got A of shape {list(A.shape)}")
    x = linalg.solve(A.reshape(B.numel(), -1), B.reshape(-1, 1))
    return x.reshape(unknowns)


def vander(x, *, N=None):
    """(..., n) -> (..., n, N): the powers x^0, x^1, ..., x^(N-1) (N defaults to n)."""
    if x.ndim == 0:
        raise RuntimeError("linalg.vander: x must have at least one dimension")
    n = x.shape[-1] if N is None else N
    if n <= 1:
        raise RuntimeError(f"linalg.vander: N must be greater than 1, got {n}")
    powers = [x * 0 + 1]
    for _ in range(n - 1):
        powers.append(powers[-1] * x)
    return stack(powers, -1)
