"""The reduction operations of all_reduce, reduce and reduce_scatter."""
import enum

import numpy as np


class ReduceOp(enum.Enum):
    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"
    PRODUCT = "product"


def supports_complex(reduceOp):
    """Whether `reduceOp` is defined on complex tensors (orderings and PRODUCT are not, as in
    PyTorch)."""
    return reduceOp not in (ReduceOp.MAX, ReduceOp.MIN, ReduceOp.PRODUCT)


# the NumPy ufunc that combines two ranks' values (AVG sums, then divides); on bool arrays
# add and maximum are logical or, multiply and minimum logical and, as MPI's LOR and LAND
UFUNCS = {ReduceOp.SUM: np.add, ReduceOp.AVG: np.add, ReduceOp.PRODUCT: np.multiply,
          ReduceOp.MAX: np.maximum, ReduceOp.MIN: np.minimum}
