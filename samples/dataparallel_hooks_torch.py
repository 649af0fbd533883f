"""The DeOldify bug in plain PyTorch: the twin of ``samples/dataparallel_hooks.py``.

The same small U-Net, written against ``torch.nn`` only (no torchscope
import): a hook object registered as a forward hook on an encoder block
stores the block's output (``self.stored = output``) and the decoder reads
``hook.stored``. ``torch.nn.DataParallel`` replicas are shallow copies, so
every replica shares the same hook object: the replica threads overwrite each
other's ``stored``, and a replica concatenates its own activations with
another device's ("Expected all tensors to be on the same device").

Variants (``--variant``), as in the reimpl sample:

* ``buggy``: the hook above.
* ``print``: a debugging attempt that logs every stored output by iterating a
  dict shared by the replicas (keyed by thread); a ``print`` lets the other
  replica add to the dict mid-iteration: "dictionary changed size during
  iteration".
* ``fixed``: the stored output is kept per thread (``threading.local``), so
  each replica reads its own; it matches the single-device model.
* ``fixed-device``: the fix ``torchscope check`` proposes, one stored output
  per device (``self.stored[output.device] = output``), read back by the
  device of the decoder's input.
* ``thread-id`` and ``thread-id-print``: the DeOldify walkthrough's own fix
  (outputs keyed by ``threading.get_ident()``, each decoder taking its own)
  and its debugging print on it, which raises ``KeyError``.

The decoder reads its skip connection through ``hook.take(up_in)``: the
reimpl twin's ``take()``, given the decoder's input so a hook keyed by device
can find its entry.

On a machine with two or more GPUs it runs as written. On a CPU-only machine
``DataParallel`` has no device and runs the module as a plain call, so the bug
cannot happen; ``torchscope record --target torch --sim-devices 2`` runs the
same file, unchanged, on two simulated devices, where the buggy variant fails
on every run::

    python samples/dataparallel_hooks_torch.py --variant buggy     # GPUs, or one plain call
    torchscope record --target torch --sim-devices 2 samples/dataparallel_hooks_torch.py
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class Hook:
    """DeOldify's hook: remembers the last output of the module it watches."""

    def __init__(self, module: nn.Module) -> None:
        self.stored: Any = None
        self.handle = module.register_forward_hook(self.hook_fn)

    def hook_fn(self, module: nn.Module, input: Any, output: torch.Tensor) -> None:
        self.stored = output  # one attribute, shared by every replica

    def take(self, like: torch.Tensor | None = None) -> Any:
        """The skip connection, as the decoder whose input is ``like`` reads it."""
        return self.stored


class PrintingHook(Hook):
    """The buggy hook plus a debugging print of every output seen, per thread."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self.seen: dict[str, tuple[int, ...]] = {}

    def hook_fn(self, module: nn.Module, input: Any, output: torch.Tensor) -> None:
        super().hook_fn(module, input, output)
        self.seen[threading.current_thread().name] = tuple(output.shape)
        for thread, shape in self.seen.items():  # another replica may add a key meanwhile
            print(f"  {type(module).__name__} output on {thread}: {shape}")


class ThreadLocalHook(Hook):
    """The fix: each replica thread stores and reads its own output."""

    def __init__(self, module: nn.Module) -> None:
        self._local = threading.local()
        super().__init__(module)

    @property  # type: ignore[override]
    def stored(self) -> Any:
        return getattr(self._local, "stored", None)

    @stored.setter
    def stored(self, value: Any) -> None:
        self._local.stored = value


class DeviceKeyedHook(Hook):
    """The fix keyed by device: each replica stores and reads its device's output."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self.stored: dict[torch.device, torch.Tensor] = {}

    def hook_fn(self, module: nn.Module, input: Any, output: torch.Tensor) -> None:
        self.stored[output.device] = output

    def take(self, like: torch.Tensor | None = None) -> Any:
        assert like is not None
        return self.stored[like.device]


class ThreadIdHook(Hook):
    """The walkthrough's fix: outputs keyed by the thread that produced them.

    ``thread-id``: each decoder takes its own replica's entry out, so a later
    step (new replica threads, whose ids the OS may reuse) never reads an old
    one; it matches one device. ``thread-id-print`` adds the walkthrough's
    debugging print of every other replica's entry: the print lets the other
    replica run and take its own, so ``self.stored[key]`` raises ``KeyError``.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self.stored: dict[int, torch.Tensor] = {}

    def hook_fn(self, module: nn.Module, input: Any, output: torch.Tensor) -> None:
        self.stored[threading.get_ident()] = output  # one key per replica thread

    def take(self, like: torch.Tensor | None = None) -> torch.Tensor:
        return self.stored.pop(threading.get_ident())  # this replica's own, and only once


class ThreadIdPrintingHook(ThreadIdHook):
    """The fix plus the walkthrough's debugging print of every replica's entry."""

    def take(self, like: torch.Tensor | None = None) -> torch.Tensor:
        own = super().take(like)
        for key in list(self.stored):  # the other replicas' entries, to compare devices
            print(f"  thread {key} stored:")  # meanwhile the other replica takes its own...
            print(f"    {self.stored[key].device}")  # ...so: KeyError
        return own


HOOKS: dict[str, type[Hook]] = {
    "buggy": Hook,
    "print": PrintingHook,
    "fixed": ThreadLocalHook,
    "fixed-device": DeviceKeyedHook,
    "thread-id": ThreadIdHook,
    "thread-id-print": ThreadIdPrintingHook,
}


class UnetBlock(nn.Module):
    """Upsamples its input and concatenates the skip connection its hook stored."""

    def __init__(self, up_in: int, hook: Hook, skip: int, out: int) -> None:
        super().__init__()
        self.hook = hook  # a plain attribute: replicas share it
        self.up = nn.ConvTranspose2d(up_in, up_in // 2, 2, stride=2)
        self.conv = nn.Sequential(nn.Conv2d(up_in // 2 + skip, out, 3, padding=1), nn.ReLU())

    def forward(self, up_in: torch.Tensor) -> torch.Tensor:
        s = self.hook.take(up_in)
        up_out = self.up(up_in)
        return self.conv(torch.cat([up_out, s], dim=1))


class UNet(nn.Module):
    """Two encoder blocks watched by hooks, a bottleneck, two decoder blocks."""

    def __init__(self, hook_cls: type[Hook] = Hook, channels: int = 3) -> None:
        super().__init__()
        enc1 = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU())
        enc2 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        middle = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.encoder = nn.Sequential(enc1, enc2, middle)
        self.hooks = [hook_cls(enc1), hook_cls(enc2)]
        self.up2 = UnetBlock(16, self.hooks[1], 16, 16)
        self.up1 = UnetBlock(16, self.hooks[0], 8, 8)
        self.head = nn.Conv2d(8, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.up1(self.up2(self.encoder(x))))


def run(
    variant: str = "buggy", *, parallel: bool = True, batch: int = 4, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, UNet]:
    """One forward and backward of the U-Net, under ``nn.DataParallel`` when ``parallel``.

    Returns the output, the loss and the model (its parameters hold the gradients).
    """
    torch.manual_seed(seed)
    model = UNet(HOOKS[variant])
    x = torch.randn(batch, 3, 16, 16)
    if torch.cuda.is_available():
        model, x = model.cuda(), x.cuda()
    net = nn.DataParallel(model) if parallel else model
    out = net(x)
    loss = out.square().mean()
    loss.backward()
    return out, loss, model


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one variant; prints the replica's error and returns 1 if it fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=sorted(HOOKS), default="buggy")
    parser.add_argument(
        "--single", action="store_true", help="run the model without DataParallel (the reference)"
    )
    parser.add_argument("--batch", type=int, default=4)
    ns = parser.parse_args(argv)
    print(f"variant {ns.variant}, {'one device' if ns.single else 'nn.DataParallel'}")
    try:
        out, loss, _ = run(ns.variant, parallel=not ns.single, batch=ns.batch)
    except (RuntimeError, KeyError) as err:  # KeyError: the thread-id-print variant
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    print(f"ok: output {tuple(out.shape)}, loss {loss.item():.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
