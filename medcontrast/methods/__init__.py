"""Self-supervised methods, one file each, behind a registry (``build_method``)."""

from medcontrast.methods import byol, dino, moco, simclr, supcon, vicreg  # noqa: F401
from medcontrast.methods.base import METHODS, Method, build_method

__all__ = ["METHODS", "Method", "build_method"]
