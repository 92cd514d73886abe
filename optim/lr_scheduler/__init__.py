"""Learning-rate schedules: each sets `param_groups[i]["lr"]` once per `step()`.

The formulas are PyTorch's, in the same recursive or closed form, so a schedule gives the same
sequence of rates; state dicts hold the same entries (every attribute but the optimizer).

- `_base.py`: `LRScheduler`, the base class;
- `_multiplicative.py`: `LambdaLR`, `MultiplicativeLR`, `StepLR`, `MultiStepLR`, `ConstantLR`,
  `LinearLR`, `ExponentialLR`, `PolynomialLR`;
- `_cosine.py`: `CosineAnnealingLR`, `CosineAnnealingWarmRestarts`;
- `_cyclic.py`: `CyclicLR`, `OneCycleLR`;
- `_composite.py`: `SequentialLR`, `ChainedScheduler`;
- `_plateau.py`: `ReduceLROnPlateau`.
"""
from ._base import EPOCH_DEPRECATION_WARNING, LRScheduler, _LRScheduler
from ._composite import ChainedScheduler, SequentialLR
from ._cosine import CosineAnnealingLR, CosineAnnealingWarmRestarts
from ._cyclic import CyclicLR, OneCycleLR
from ._multiplicative import (ConstantLR, ExponentialLR, LambdaLR, LinearLR, MultiplicativeLR,
                              MultiStepLR, PolynomialLR, StepLR)
from ._plateau import ReduceLROnPlateau

__all__ = ["LRScheduler", "LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR",
           "LinearLR", "ExponentialLR", "SequentialLR", "CosineAnnealingLR", "ChainedScheduler",
           "ReduceLROnPlateau", "CyclicLR", "CosineAnnealingWarmRestarts", "OneCycleLR",
           "PolynomialLR"]
