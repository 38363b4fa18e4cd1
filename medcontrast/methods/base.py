"""The method contract: ``forward(batch) -> {"loss": scalar, ...}``.

A batch is a dict with ``view1`` and ``view2`` of shape (B, C, *size), ``patient`` (B,) integer
group codes and optionally ``label`` (B,). Extra entries of the returned dict are logged.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import inspect
import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from medcontrast.augment.multicrop import LocalCrops
from medcontrast.errors import MedContrastError
from medcontrast.models.encoders import Encoder
from medcontrast.models.heads import HeadSpec
from medcontrast.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")


class Method(nn.Module):
    """Base class: holds the online encoder that gets exported."""

    needs_labels = False
    # Multi-crop methods (DINO) with local crops set this: the loop then adds ``batch["local"]``
    # (n * B, C, *local).
    local_views: LocalCrops | None = None
    # Methods that draw on the device (restoration's corruptions, MAE's masks) set this: the loop
    # then adds ``device_draws(batch, generator)`` to the batch, with a generator of (seed, step,
    # rank), so a resumed run draws the same.
    draws_on_device = False

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def check_input(self, size: tuple[int, ...]) -> None:
        """Raise naming the setting when the method cannot train on inputs of spatial ``size``
        (called before training starts)."""
        local = self.local_views
        if local is None:
            return
        small = local.size_of(size)
        if not accepts(self.encoder, small):
            raise MedContrastError(
                f"method.local_size={local.size_fraction} makes local crops of {list(small)} from "
                f"data.size {list(size)}, which encoder {self.encoder.spec.name} cannot take. "
                "Use a larger method.local_size (1.0: local crops at the global size), or "
                "method.local_crops=0 (two global crops only)"
            )

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def device_draws(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Entries to add to a batch on the device, drawn from ``generator`` (see
        ``draws_on_device``)."""
        return {}

    def after_step(self, progress: float) -> None:
        """Called after each optimizer step with training progress in [0, 1]."""


@contextlib.contextmanager
def dry_run(encoder: Encoder) -> Iterator[None]:
    """For probing ``encoder`` on zeros before training: eval mode (batch-norm statistics
    untouched) and no autograd, its training mode restored after."""
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        encoder.train(was_training)


def accepts(encoder: Encoder, size: tuple[int, ...]) -> bool:
    """Whether ``encoder`` maps two zero inputs of spatial ``size`` to finite features (in a
    :func:`dry_run`) and is not fixed to another size."""
    if encoder.fixed_size and list(size) != list(encoder.spec.size):
        return False
    try:
        with dry_run(encoder):
            x = torch.zeros(2, encoder.spec.in_channels, *size)
            return bool(torch.isfinite(encoder(x)).all())
    except (RuntimeError, ValueError, AssertionError, AttributeError):
        return False


def momentum_at(base: float, progress: float) -> float:
    """Cosine increase of the EMA momentum from ``base`` to 1 (BYOL, Grill et al., 2020)."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1) / 2


class MomentumPair(nn.Module):
    """A frozen copy of modules updated as an exponential moving average of the originals."""

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        self.targets = nn.ModuleList(copy.deepcopy(m) for m in modules)
        for p in self.targets.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, sources: list[nn.Module], momentum: float) -> None:
        for src, tgt in zip(sources, self.targets, strict=True):
            for ps, pt in zip(src.parameters(), tgt.parameters(), strict=True):
                pt.mul_(momentum).add_(ps.detach(), alpha=1 - momentum)
            for bs, bt in zip(src.buffers(), tgt.buffers(), strict=True):
                bt.copy_(bs)


def method_settings(name: str) -> dict[str, inspect.Parameter]:
    """The keyword arguments of method ``name``'s constructor that are its own settings (all but
    the encoder and the head): the keys its ``method:`` block may hold besides ``name``, ``head``."""
    params = inspect.signature(METHODS.get(name).__init__).parameters
    return {k: p for k, p in params.items() if k not in ("self", "encoder", "head")}


def check_settings(name: str, keys: Iterable[str], prefix: str = "method.") -> None:
    """Raise for the first of ``keys`` that method ``name`` does not take, naming the key, a close
    one or the methods that do take it, and the keys ``name`` takes."""
    accepted = list(method_settings(name))
    for key in keys:
        if key in accepted:
            continue
        close = difflib.get_close_matches(key, accepted, n=1)
        owners = [m for m in METHODS.names() if key in method_settings(m)]
        hint = ""
        if close:
            hint = f" (did you mean {prefix}{close[0]}?)"
        elif owners:
            hint = f" (a setting of {', '.join(owners)})"
        takes = ", ".join(accepted) or "no settings of its own"
        if prefix:
            takes += f" (besides {prefix}name and {prefix}head)"
        raise MedContrastError(
            f"{prefix}{key} is not a setting of method {name}{hint}; {name} takes: {takes}"
        )


def build_method(
    name: str, encoder: Encoder, head: HeadSpec | None = None, **settings: Any
) -> Method:
    """Instantiate a registered method; ``settings`` are its own keyword arguments, and one it
    does not take is an error (never silently dropped)."""
    check_settings(name, settings, prefix="")
    return METHODS.get(name)(encoder, head=head, **settings)
