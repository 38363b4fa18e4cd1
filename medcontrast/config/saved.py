"""Configs that a run or an evaluation folder saved, read as today's code would have written them.

A folder written by an earlier release may lack settings added since, or carry keys since
renamed (:mod:`.renamed`); a setting added with a default other than the behaviour before it
takes the value that was in force before it existed, so an older folder keeps its meaning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from medcontrast.config.loading import from_dict, to_dict
from medcontrast.config.renamed import upgrade
from medcontrast.config.schema import EvaluateConfig
from medcontrast.errors import MedContrastError

# Settings added with a default other than the behaviour before them: what that behaviour was.
BEFORE_THEY_EXISTED = {("finetune", "mode"): "plain"}


def read_saved_evaluation(path: Path) -> EvaluateConfig:
    """An evaluation folder's ``config.yaml`` (not resolved again: it was saved resolved)."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise MedContrastError(f"cannot read {path}: {exc}") from None
    raw = upgrade(raw, warn=False)
    for (section, key), value in BEFORE_THEY_EXISTED.items():
        raw.setdefault(section, {}).setdefault(key, value)
    try:
        return from_dict(EvaluateConfig, raw)
    except MedContrastError as exc:
        raise MedContrastError(f"{path}: {exc}") from None


def as_saved(cfg: Any) -> dict[str, Any]:
    """A config as its YAML file holds it (plain lists and dicts, no tuples)."""
    return yaml.safe_load(yaml.safe_dump(to_dict(cfg), sort_keys=False))
