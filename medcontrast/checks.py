"""Range checks of settings, shared by the config sections that own them (ground floor: it
imports nothing of the package but the error type)."""

from __future__ import annotations

from medcontrast.errors import MedContrastError


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
            raise MedContrastError(f"{section}.{key} must be above {low}, not {getattr(cfg, key)}")
    for key, low in (at_least or {}).items():
        if getattr(cfg, key) < low:
            raise MedContrastError(
                f"{section}.{key} must be {low} or more, not {getattr(cfg, key)}"
            )
    for key, (low, high) in (within or {}).items():
        if not low <= getattr(cfg, key) <= high:
            raise MedContrastError(
                f"{section}.{key} must lie in [{low}, {high}], not {getattr(cfg, key)}"
            )
