"""A faithful, readable, instrumented reimplementation of parts of PyTorch.

Files mirror torch's layout: ``reimpl/nn/modules/module.py`` reimplements
``torch/nn/modules/module.py``. Tensors, autograd and functional kernels stay
torch's; the Python machinery around them is ours, and emits events through
``reimpl._trace`` when a recorder is attached.
"""
