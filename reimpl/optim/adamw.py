"""AdamW, mirroring ``torch/optim/adamw.py``: Adam with decoupled weight decay.

As in torch, AdamW is Adam with ``decoupled_weight_decay=True`` (the weights
shrink by ``lr * weight_decay`` before the Adam step instead of the decay
entering the gradient) and a default ``weight_decay`` of 1e-2. All three
paths, including reimpl's numba-fused one, come from ``adam.py``.

Left out: what ``adam.py`` leaves out.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from reimpl._trace import mirrors

from .adam import Adam, adam
from .optimizer import ParamsT, _GroupTrace

__all__ = ["AdamW", "adamw"]


@mirrors("torch.optim.adamw.adamw")
def adamw(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    foreach: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    has_complex: bool = False,
    *,
    amsgrad: bool,
    beta1: float | Tensor,
    beta2: float | Tensor,
    lr: float | Tensor,
    weight_decay: float | Tensor,
    eps: float,
    maximize: bool,
    trace: _GroupTrace | None = None,
) -> None:
    """Functional AdamW: ``adam`` with the decay decoupled from the gradient."""
    adam(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs,
        state_steps,
        foreach=foreach,
        capturable=capturable,
        differentiable=differentiable,
        fused=fused,
        grad_scale=grad_scale,
        found_inf=found_inf,
        has_complex=has_complex,
        amsgrad=amsgrad,
        beta1=beta1,
        beta2=beta2,
        lr=lr,
        weight_decay=weight_decay,
        eps=eps,
        maximize=maximize,
        decoupled_weight_decay=True,
        trace=trace,
    )


@mirrors("torch.optim.adamw.AdamW")
class AdamW(Adam):
    """Adam whose weight decay shrinks the weights directly (Loshchilov & Hutter)."""

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float | Tensor = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
        )

    @mirrors("torch.optim.adamw.AdamW.__setstate__")
    def __setstate__(self, state: dict[str, Any]) -> None:
        """A loaded AdamW stays decoupled whatever the checkpoint says."""
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
