"""`set_printoptions`: how tensors print (precision, summarising threshold, edge items, line
width, scientific notation), with PyTorch's profiles and defaults. `printing` reads `current`."""
import sys
from dataclasses import dataclass, replace


@dataclass
class PrintOptions:
    precision: int = 4
    threshold: float = 1000
    edgeitems: int = 3
    linewidth: int = 80
    sci_mode: object = None       # None: scientific when the values are big or tiny

    @property
    def threshold_int(self):
        return sys.maxsize if self.threshold == float("inf") else int(self.threshold)


_PROFILES = {"default": PrintOptions(),
             "short": PrintOptions(precision=2, edgeitems=2),
             "full": PrintOptions(threshold=float("inf"))}
current = PrintOptions()


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None,
                     profile=None, sci_mode=None):
    """As PyTorch: a profile ('default', 'short', 'full') resets every option first, the
    other arguments then override; `sci_mode` is always set (None: automatic)."""
    global current
    if profile is not None:
        if profile not in _PROFILES:
            raise ValueError(f"set_printoptions: unknown profile {profile!r}; choose one of "
                             f"{', '.join(_PROFILES)}")
        current = replace(_PROFILES[profile])
    if precision is not None:
        current.precision = int(precision)
    if threshold is not None:
        current.threshold = threshold
    if edgeitems is not None:
        current.edgeitems = int(edgeitems)
    if linewidth is not None:
        current.linewidth = int(linewidth)
    current.sci_mode = sci_mode


def get_printoptions():
    return {"precision": current.precision, "threshold": current.threshold,
            "edgeitems": current.edgeitems, "linewidth": current.linewidth,
            "sci_mode": current.sci_mode}
