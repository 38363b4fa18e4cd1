"""The augmentation contract shared by both execution paths.

:class:`ViewsConfig` is the one definition of the view settings, checked when it is built (so at
load time); :class:`AugmentParams` applies them to a spatial size. The per-sample MONAI path
(:mod:`medcontrast.augment.monai_views`) and the batched path (:mod:`medcontrast.augment.batched`)
both read it and draw every random parameter from the same distribution, in the same order of
operations:

spatial: crop (side fraction per axis ~ U(crop_scale), random centre, resized back) -> flips ->
rot90 -> affine (rotation ~ U(+-rotate_deg) per plane, zoom 1 + U(+-scale), shift U(+-translate)
of the size) -> elastic (coarse random field U(+-elastic_magnitude) of the size, control points
every elastic_sigma of the size);
intensity: gamma contrast -> histogram shift -> scale 1 + U(+-f) -> shift U(+-o) -> bias field
(exp of a degree-3 Legendre polynomial, coefficients U(0, c)) -> Gaussian noise (std ~ U(0, s);
added, or multiplied in as speckle: x (1 + n)) ->
Gaussian blur (sigma ~ U(blur_sigma) per axis) -> sharpen -> coarse dropout (holes filled with 0,
each hole's sides drawn independently).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal

from medcontrast.checks import check_choices, check_ranges
from medcontrast.errors import MedContrastError


@dataclass
class ViewsConfig:
    """The ``views:`` section of a config: augmentation for the two views, as a user writes it
    (validated and turned into distributions by :class:`AugmentParams`).

    Probabilities are per sample; ranges are sampled uniformly per sample and per view.
    """

    path: Literal["auto", "monai", "batched"] = "auto"  # auto: batched on a GPU, monai on a CPU
    # batched path: torch.compile (auto: on CUDA); graphs: and a CUDA graph (on CUDA)
    compile: Literal["auto", "on", "off", "graphs"] = "auto"
    preset: str = ""  # radiograph | ct | mri | ultrasound | mammography | mask ; empty: as below
    crop_prob: float = 1.0
    crop_scale: list[float] = field(default_factory=lambda: [0.5, 1.0])  # side fraction per axis
    flip_prob: float = 0.5
    flip_axes: list[int] = field(default_factory=lambda: [1])  # spatial axes that may flip
    rot90_prob: float = 0.0
    rot90_axes: list[int] = field(default_factory=lambda: [0, 1])  # the plane of rotation
    affine_prob: float = 0.5
    rotate_deg: float = 10.0
    scale: float = 0.1  # zoom factor drawn in 1 +/- scale
    translate: float = 0.05  # shift as a fraction of the size
    elastic_prob: float = 0.0
    elastic_sigma: float = 0.1  # smoothness of the displacement, fraction of the size
    elastic_magnitude: float = 0.03  # displacement amplitude, fraction of the size
    contrast_prob: float = 0.5
    gamma: list[float] = field(default_factory=lambda: [0.7, 1.5])
    hist_shift_prob: float = 0.2
    hist_points: list[int] = field(default_factory=lambda: [5, 10])
    scale_intensity_prob: float = 0.5
    scale_intensity: float = 0.2
    shift_intensity_prob: float = 0.5
    shift_intensity: float = 0.1
    bias_field_prob: float = 0.2
    bias_field_coeff: float = 0.3
    noise_prob: float = 0.3
    noise_std: float = 0.05
    # additive: x + n; speckle: x (1 + n), multiplicative as ultrasound speckle is (Burckhardt,
    # "Speckle in ultrasound B-mode scans", IEEE Trans. Sonics Ultrason. 1978): bright tissue
    # gets grainier, anechoic fluid stays dark. n ~ N(0, std^2), std ~ U(0, noise_std) either way.
    noise_kind: Literal["additive", "speckle"] = "additive"
    blur_prob: float = 0.2
    blur_sigma: list[float] = field(default_factory=lambda: [0.25, 1.0])
    sharpen_prob: float = 0.0
    dropout_prob: float = 0.2
    dropout_holes: int = 3
    dropout_size: list[float] = field(default_factory=lambda: [0.05, 0.2])  # side fraction

    def __post_init__(self) -> None:
        check_choices("views", self)
        probabilities = {f.name: (0.0, 1.0) for f in fields(self) if f.name.endswith("_prob")}
        # magnitudes: each is drawn symmetrically or as U(0, value), so a negative one is a typo
        magnitudes = (
            "rotate_deg",
            "translate",
            "elastic_magnitude",
            "scale_intensity",
            "shift_intensity",
            "bias_field_coeff",
            "noise_std",
            "dropout_holes",
        )
        check_ranges(
            "views",
            self,
            above={"elastic_sigma": 0},
            at_least=dict.fromkeys(magnitudes, 0),
            within={**probabilities, "scale": (0.0, 0.99)},
        )
        rules = (  # (key, test of (low, high), what is allowed)
            ("crop_scale", lambda lo, hi: 0 < lo <= hi <= 1, "0 < low <= high <= 1"),
            ("gamma", lambda lo, hi: 0 < lo <= hi, "0 < low <= high"),
            ("hist_points", lambda lo, hi: 3 <= lo <= hi, "3 <= low <= high"),
            ("blur_sigma", lambda lo, hi: 0 <= lo <= hi, "0 <= low <= high"),
            ("dropout_size", lambda lo, hi: 0 < lo <= hi < 1, "0 < low <= high < 1"),
        )
        for key, ok, allowed in rules:
            if not ok(*_pair(getattr(self, key), key)):
                raise MedContrastError(f"views.{key} must be {allowed}, not {getattr(self, key)}")
        if len(self.rot90_axes) != 2 or self.rot90_axes[0] == self.rot90_axes[1]:
            raise MedContrastError(
                f"views.rot90_axes must be two different spatial axes, not {self.rot90_axes}"
            )


@dataclass(frozen=True)
class AugmentParams:
    """The view settings of ``views`` applied to ``ndim`` spatial axes of ``size``, with the
    quantities derived from both. See the module docstring for the semantics.

    The settings themselves are not copied: both paths read them as ``params.views.<key>``.
    """

    views: ViewsConfig  # checked when it was built; its preset resolved when it was loaded
    ndim: int
    size: tuple[int, ...]

    def __post_init__(self) -> None:
        for key in ("flip_axes", "rot90_axes"):
            axes = getattr(self.views, key)
            if any(a < 0 or a >= self.ndim for a in axes):
                raise MedContrastError(
                    f"views.{key} {list(axes)} must be spatial axes below {self.ndim}"
                )

    @classmethod
    def from_config(cls, cfg: ViewsConfig, ndim: int, size: tuple[int, ...]) -> AugmentParams:
        """The settings ``cfg`` for ``ndim`` spatial axes of ``size``."""
        return cls(views=cfg, ndim=ndim, size=tuple(size))

    @property
    def rotate_rad(self) -> float:
        return math.radians(self.views.rotate_deg)

    @property
    def elastic_grid(self) -> tuple[int, ...]:
        """Control points per axis of the coarse displacement field."""
        return tuple(max(2, math.ceil(1.0 / self.views.elastic_sigma)) for _ in self.size)


def _pair(values: list, name: str) -> tuple[float, float]:
    if len(values) != 2:
        raise MedContrastError(f"views.{name} needs two values [low, high], got {values}")
    return float(values[0]), float(values[1])
