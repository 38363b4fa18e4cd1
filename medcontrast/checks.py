"""Checks of settings, shared by the config sections that own them (ground floor: it imports
nothing of the package but the error type). Each section's ``__post_init__`` calls them, so a
bad value fails when the config is loaded, and also when a section is built in Python."""

from __future__ import annotations

import functools
import re
import typing

from medcontrast.errors import MedContrastError


@functools.cache
def _choices(cls: type) -> dict[str, tuple]:
    """The fields of dataclass ``cls`` annotated ``Literal[...]``, with their allowed values."""
    out = {}
    for key, tp in typing.get_type_hints(cls).items():
        if typing.get_origin(tp) is list:  # list[Literal[...]]: each item is a choice
            (tp,) = typing.get_args(tp)
        if typing.get_origin(tp) is typing.Literal:
            out[key] = typing.get_args(tp)
    return out


def _name(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key  # "" for the top level of a config


def check_choices(section: str, cfg: object) -> None:
    """Raise naming ``section.key``, the value and the allowed values for the first field of
    ``cfg`` annotated ``Literal[...]`` (or ``list[Literal[...]]``) whose value is not one of them."""
    for key, allowed in _choices(type(cfg)).items():
        value = getattr(cfg, key)
        for item in value if isinstance(value, list) else [value]:
            if item not in allowed:
                raise MedContrastError(
                    f"{_name(section, key)}: {item!r} is not one of {', '.join(map(str, allowed))}"
                )


def check_ranges(
    section: str,
    cfg: object,
    above: dict[str, float] | None = None,
    at_least: dict[str, float] | None = None,
    within: dict[str, tuple[float, float]] | None = None,
) -> None:
    """Raise naming ``section.key``, the value and the allowed range for the first setting of
    ``cfg`` outside it: ``above`` (strictly), ``at_least``, ``within`` (inclusive)."""
    for key, low in (above or {}).items():
        if not getattr(cfg, key) > low:
            raise MedContrastError(
                f"{_name(section, key)} must be above {low}, not {getattr(cfg, key)}"
            )
    for key, low in (at_least or {}).items():
        if getattr(cfg, key) < low:
            raise MedContrastError(
                f"{_name(section, key)} must be {low} or more, not {getattr(cfg, key)}"
            )
    for key, (low, high) in (within or {}).items():
        if not low <= getattr(cfg, key) <= high:
            raise MedContrastError(
                f"{_name(section, key)} must lie in [{low}, {high}], not {getattr(cfg, key)}"
            )


def check_device(key: str, value: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (whether that GPU exists is known only where
    the config runs: :func:`medcontrast.runtime.resolve_device` says so there)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise MedContrastError(f"{key}: {value!r} is not one of auto, cpu, cuda, cuda:N")
