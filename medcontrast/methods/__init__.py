"""Self-supervised methods, one file each, behind a registry (``build_method``)."""

from medcontrast.methods import byol, moco, simclr, supcon  # noqa: F401  (registration)
from medcontrast.methods.base import METHODS, Method, build_method

__all__ = ["METHODS", "Method", "build_method"]
