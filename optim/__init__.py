"""Optimizers and learning-rate schedules, with PyTorch's names, defaults and state dicts.

    opt = px.optim.AdamW(model.parameters(), lr=3e-4)
    sched = px.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=1000)
"""
from . import lr_scheduler, swa_utils
from .adadelta import Adadelta
from .adafactor import Adafactor
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adamax import Adamax
from .asgd import ASGD
from .lbfgs import LBFGS
from .muon import Muon
from .nadam import NAdam
from .optimizer import Optimizer
from .radam import RAdam
from .rmsprop import RMSprop
from .rprop import Rprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adafactor",
           "Adamax", "NAdam", "RAdam", "ASGD", "Rprop", "LBFGS", "Muon", "lr_scheduler",
           "swa_utils"]
