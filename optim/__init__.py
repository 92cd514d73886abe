"""Optimizers and learning-rate schedules, with PyTorch's names, defaults and state dicts.

    opt = px.optim.AdamW(model.parameters(), lr=3e-4)
    sched = px.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=1000)
"""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "lr_scheduler"]
