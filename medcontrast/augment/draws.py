"""Every random parameter of a batch from one ``torch.rand`` call.

Launching one small kernel per parameter dominated the batched views on a GPU (about 300 per
call, ``../shared/measured-on-gpu.md``). A :class:`DrawPlan` lays all parameters of a pipeline
out as columns of one (B, K) uniform draw and turns it into the parameters in a fixed handful of
tensor operations, whatever the number of steps:

- a **coin** column is 1.0 with its probability and 0.0 otherwise (a per-sample mask: a skipped
  step is a step with neutral parameters, not a Python branch);
- a **uniform** column is ``lo + (hi - lo) * u``; an **integer** column is its floor, uniform on
  ``lo, ..., hi - 1`` (capped at ``hi - 1``: in float32 ``lo + (hi - lo) * u`` rounds to ``hi``
  for the largest u, and a histogram curve then indexed past its end on a GPU);
- a column may be **gated** by a coin: where the coin came up 0 it takes a neutral value (a
  rotation of 0, a zoom of 1, a noise level of 0) that makes its step the identity.

Each column is its own uniform draw, so parameters are independent, as in MONAI's per-sample
transforms. Ground floor: torch only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

_ALWAYS = 2.0  # the threshold of a column without a coin: u < 2 always holds


@dataclass
class _Block:
    name: str
    width: int


@dataclass
class DrawPlan:
    """Columns of the batch's draw, in the order they were added; see the module docstring."""

    blocks: list[_Block] = field(default_factory=list)
    lo: list[float] = field(default_factory=list)
    span: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    owner: list[int] = field(default_factory=list)  # the column whose coin gates this one
    threshold: list[float] = field(default_factory=list)  # the owner's probability
    neutral: list[float] = field(default_factory=list)
    _constants: dict = field(default_factory=dict, repr=False)

    @property
    def width(self) -> int:
        return len(self.lo)

    def coin(self, name: str, probs: list[float]) -> list[int]:
        """One coin per entry of ``probs``; returns the columns, to gate others with."""
        first = self.width
        cols = list(range(first, first + len(probs)))
        self._add(name, [1.0] * len(probs), [0.0] * len(probs), False, cols, probs, 0.0)
        return cols

    def uniform(
        self,
        name: str,
        lo: list[float],
        hi: list[float],
        gate: list[int] | None = None,
        neutral: float = 0.0,
        integer: bool = False,
    ) -> None:
        """Columns ~ U(lo, hi) (floored when ``integer``), ``neutral`` where ``gate``'s coin is 0."""
        span = [h - lo_ for lo_, h in zip(lo, hi, strict=True)]
        if gate is None:
            owners, probs = [0] * len(lo), [_ALWAYS] * len(lo)
        else:
            owners = gate if len(gate) == len(lo) else [gate[0]] * len(lo)
            probs = [self.threshold[c] for c in owners]
        self._add(name, lo, span, integer, owners, probs, neutral)

    def _add(self, name, lo, span, integer, owners, probs, neutral) -> None:
        self.blocks.append(_Block(name, len(lo)))
        self.lo += [float(v) for v in lo]
        self.span += [float(v) for v in span]
        self.integer += [integer] * len(lo)
        self.owner += list(owners)
        self.threshold += [float(p) for p in probs]
        self.neutral += [float(neutral)] * len(lo)

    def constants(self, dev: torch.device) -> dict[str, torch.Tensor]:
        """The plan's vectors on ``dev``, made once per device."""
        if dev not in self._constants:
            as_t = lambda v, dtype=torch.float32: torch.tensor(v, dtype=dtype, device=dev)  # noqa: E731
            top = [
                lo + span - 1 if i else math.inf
                for lo, span, i in zip(self.lo, self.span, self.integer, strict=True)
            ]
            self._constants[dev] = {
                "top": as_t(top),
                "lo": as_t(self.lo),
                "span": as_t(self.span),
                "integer": as_t(self.integer, torch.bool),
                "owner": as_t(self.owner, torch.long),
                "threshold": as_t(self.threshold),
                "neutral": as_t(self.neutral),
            }
        return self._constants[dev]

    def draw(self, n: int, g: torch.Generator, dev: torch.device) -> torch.Tensor:
        """(n, K) uniforms in [0, 1): every random parameter of ``n`` samples, one kernel."""
        return torch.rand((n, self.width), generator=g, device=dev)

    def parameters(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """(n, K) uniforms from :meth:`draw` -> {block name: (n, width) parameters}."""
        c = self.constants(u.device)
        values = torch.addcmul(c["lo"], c["span"], u)
        if any(self.integer):
            values = torch.minimum(torch.where(c["integer"], values.floor(), values), c["top"])
        on = u[:, c["owner"]] < c["threshold"]
        values = torch.where(on, values, c["neutral"])
        parts = values.split([b.width for b in self.blocks], dim=1)
        return {b.name: part for b, part in zip(self.blocks, parts, strict=True)}
