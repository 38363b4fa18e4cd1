"""Self-supervised methods, one file each, behind a registry (``build_method``)."""

from medcontrast.methods import (  # noqa: F401
    byol,
    dino,
    mae,
    moco,
    restoration,
    simclr,
    supcon,
    vicreg,
)
from medcontrast.methods.base import METHODS, Method, build_method

__all__ = ["METHODS", "Method", "build_method"]
