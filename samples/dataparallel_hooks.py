"""The DeOldify bug: forward hooks that store skip connections, under DataParallel.

A small U-Net keeps its skip connections the way DeOldify (fastai v1) does: a
hook object registered as a forward hook on an encoder block stores the
block's output (``self.stored = output``) and the decoder reads
``hook.stored``. ``DataParallel`` replicas are shallow copies, so every
replica shares the same hook object: the replica threads overwrite each
other's ``stored``, and a replica concatenates its own activations with
another device's ("Expected all tensors to be on the same device").

Variants (``--variant``; the walkthrough's own two, below: ``ThreadIdHook``):

* ``buggy``: the hook above. Under ``--lockstep`` (the default) it fails on
  every run; without, only when the threads happen to interleave badly.
* ``print``: a debugging attempt that logs every stored output by iterating
  a dict shared by the replicas; a ``print`` lets the other replica add to
  the dict mid-iteration: "dictionary changed size during iteration".
* ``fixed``: the stored output is kept per thread (``threading.local``), so
  each replica reads its own; it matches the single-device model.

Runs on two simulated devices on any machine::

    python -m samples.dataparallel_hooks --variant buggy     # exits 1, prints the error
    python -m samples.dataparallel_hooks --variant fixed --no-lockstep
    torchscope record samples/dataparallel_hooks.py --variant buggy
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from typing import Any

import torch

from reimpl import _trace, nn
from reimpl.devices import sim_device_of
from reimpl.nn.parallel import DataParallel, lockstep

DEVICES = ("sim:0", "sim:1")


class Hook:
    """DeOldify's hook: remembers the last output of the module it watches."""

    def __init__(self, module: nn.Module) -> None:
        self.stored: Any = None
        self.handle = module.register_forward_hook(self.hook_fn)

    def hook_fn(self, module: nn.Module, input: Any, output: torch.Tensor) -> None:
        self.stored = output  # one attribute, shared by every replica

    def take(self) -> Any:
        """The skip connection, as the decoder reads it."""
        return self.stored


class PrintingHook(Hook):
    """The buggy hook plus a debugging print of every output seen, per device."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self.seen: dict[str, tuple[int, ...]] = {}

    def hook_fn(self, module: nn.Module, input: Any, output: torch.Tensor) -> None:
        super().hook_fn(module, input, output)
        self.seen[sim_device_of(output)] = tuple(output.shape)
        for device, shape in self.seen.items():  # another replica may add a key meanwhile
            print(f"  {type(module).__name__} output on {device}: {shape}")


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


class ThreadIdHook(Hook):
    """The walkthrough's fix: outputs keyed by the thread that produced them.

    The DeOldify walkthrough's own story (its code is not shown; these fail as
    it tells):

    * ``thread-id``: its fix, the stored outputs in a dict keyed by the current
      thread id (``self.stored[threading.get_ident()] = output``); each decoder
      takes its own replica's entry out, so a later step (new replica threads,
      whose ids the OS may reuse) never reads an old one. Matches one device.
    * ``thread-id-print``: the same, plus its debugging print: when a decoder
      takes its skip connection it prints every other replica's entry, a line
      for the thread, then one for its output. The print lets the other
      replica run (and take its own entry), so ``self.stored[key]`` raises
      ``KeyError`` (under ``--lockstep`` on every run); without the print the
      fix runs clean, as in the walkthrough.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self.stored: dict[int, torch.Tensor] = {}

    def hook_fn(self, module: nn.Module, input: Any, output: torch.Tensor) -> None:
        self.stored[threading.get_ident()] = output  # one key per replica thread

    def take(self) -> torch.Tensor:
        return self.stored.pop(threading.get_ident())  # this replica's own, and only once


class ThreadIdPrintingHook(ThreadIdHook):
    """The fix plus the walkthrough's debugging print of every replica's entry."""

    def take(self) -> torch.Tensor:
        own = super().take()
        for key in list(self.stored):  # the other replicas' entries, to compare devices
            print(f"  thread {key} stored:")  # meanwhile the other replica takes its own...
            print(f"    {sim_device_of(self.stored[key])}")  # ...so: KeyError
        return own


HOOKS: dict[str, type[Hook]] = {
    "buggy": Hook,
    "print": PrintingHook,
    "fixed": ThreadLocalHook,
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
        s = self.hook.take()
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
    variant: str = "buggy", *, use_lockstep: bool = True, batch: int = 4, seed: int = 0
) -> tuple[torch.Tensor, UNet]:
    """One forward and backward of the U-Net on two simulated devices.

    Returns the output and the model (its parameters hold the gradients).
    """
    torch.manual_seed(seed)
    model = UNet(HOOKS[variant])
    x = torch.randn(batch, 3, 16, 16)
    parallel = DataParallel(model, device_ids=list(DEVICES))
    with _trace.step(0):
        if use_lockstep:
            with lockstep():
                out = parallel(x)
        else:
            out = parallel(x)
        out.square().mean().backward()
    return out, model


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one variant; prints the replica's error and returns 1 if it fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=sorted(HOOKS), default="buggy")
    parser.add_argument(
        "--lockstep",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="switch replica threads round-robin so the race reproduces (default: on)",
    )
    parser.add_argument("--batch", type=int, default=4)
    ns = parser.parse_args(argv)
    mode = "lockstep" if ns.lockstep else "free-running threads"
    print(f"variant {ns.variant} on {', '.join(DEVICES)} ({mode})")
    try:
        out, _ = run(ns.variant, use_lockstep=ns.lockstep, batch=ns.batch)
    except (RuntimeError, KeyError) as err:  # KeyError: the thread-id-print variant
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    print(f"ok: output {tuple(out.shape)} on {sim_device_of(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
