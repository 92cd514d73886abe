"""Emitters, one module per op family (importing them fills `registry.EMITTERS`).

Composite layers (LSTM, GRU and RNN cells, multi-head attention, transformer layers, dropout,
flatten) are built from these ops and need no emitter of their own.
"""
from . import (conv, elementwise, indexing, linalg, logic, mathfuncs,  # noqa: F401
               normalization, reduction, shape)
from .registry import EMITTERS, OpCall  # noqa: F401
