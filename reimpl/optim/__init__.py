"""torch.optim, reimplemented: optimizers, LR schedulers and SWA utilities.

Mirrors ``torch/optim/__init__.py``: the same names, importable from here.
"""

from . import lr_scheduler, swa_utils
from .adagrad import Adagrad
from .adam import Adam
from .adamw import AdamW
from .optimizer import (
    Optimizer,
    name_parameters,
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = [
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSprop",
    "lr_scheduler",
    "name_parameters",
    "register_optimizer_step_post_hook",
    "register_optimizer_step_pre_hook",
    "swa_utils",
]
