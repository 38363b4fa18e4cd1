"""Keys of earlier releases, moved to their new place with a warning naming the new key.

They keep working for one release (0.2): the projection head's settings moved from ``model:`` to
``method.head:``, and patient pairing, a data concern, from ``method:`` to ``pairs:``;
``train.tensorboard`` became ``train.loggers: [tensorboard]``; ``finetune.device``, never read (fine-tuning runs on the evaluation's ``device``), is dropped.
Fine-tuning's schedule became a budget of optimiser steps: ``finetune.epochs`` x
``finetune.min_steps_per_epoch`` (the steps of an epoch on a small budget) are ``finetune.steps``,
with a validation check every ``min_steps_per_epoch`` steps (``finetune.eval_every``), as once a
check per epoch.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

from medcontrast.errors import MedContrastError
from medcontrast.methods import METHODS
from medcontrast.methods.base import method_settings

# old dotted key -> new dotted key, for the keys that only moved
MOVED = {
    "model.proj_hidden": "method.head.hidden",
    "model.proj_dim": "method.head.dim",
    "model.proj_layers": "method.head.layers",
    "model.pred_hidden": "method.head.pred_hidden",
}


def _pop(tree: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    section, key = dotted.split(".")
    node = tree.get(section)
    if not isinstance(node, dict) or key not in node:
        return False, None
    return True, node.pop(key)


def _put(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, key = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node.setdefault(key, value)  # a value given under the new key wins


def _say(old: str, new: str, warn: bool) -> None:
    if warn:
        warnings.warn(
            f"config key {old} is now {new}; the old name works until medcontrast 0.3",
            FutureWarning,
            stacklevel=4,
        )


def upgrade(tree: dict[str, Any], warn: bool = True) -> dict[str, Any]:
    """A copy of a config mapping with the keys of earlier releases moved to their new place."""
    tree = copy.deepcopy(tree)
    for old, new in MOVED.items():
        found, value = _pop(tree, old)
        if found:
            _say(old, new, warn)
            _put(tree, new, value)
    found, _ = _pop(tree, "finetune.device")
    if found:
        _say("finetune.device", "device (finetune.device was never read)", warn)
    found, on = _pop(tree, "train.tensorboard")
    if found:
        _say("train.tensorboard", "train.loggers: [tensorboard]", warn)
        if not isinstance(on, bool):
            raise MedContrastError(f"train.tensorboard: expected true or false, got {on!r}")
        if on:
            loggers = tree["train"].setdefault("loggers", [])
            if "tensorboard" not in loggers:
                loggers.append("tensorboard")
    _upgrade_epochs(tree, warn)
    found_on, on = _pop(tree, "method.patient_positives")
    found_group, group = _pop(tree, "method.positive_group")
    if found_on or found_group:
        _say("method.patient_positives / method.positive_group", "pairs.positives", warn)
        _put(tree, "pairs.positives", (group or "patient") if on else "image")
    return tree


def _upgrade_epochs(tree: dict[str, Any], warn: bool) -> None:
    """``finetune.epochs`` and ``finetune.min_steps_per_epoch`` as steps and checks."""
    found_epochs, epochs = _pop(tree, "finetune.epochs")
    found_min, per_epoch = _pop(tree, "finetune.min_steps_per_epoch")
    if not (found_epochs or found_min):
        return
    _say("finetune.epochs / finetune.min_steps_per_epoch", "finetune.steps / eval_every", warn)
    per_epoch = per_epoch if found_min else 10  # that release's default
    for key, value in (("epochs", epochs), ("min_steps_per_epoch", per_epoch)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise MedContrastError(f"finetune.{key} must be 1 or more, not {value!r}")
    if found_epochs:
        _put(tree, "finetune.steps", epochs * per_epoch)
    _put(tree, "finetune.eval_every", per_epoch)


def upgrade_saved(tree: dict[str, Any]) -> dict[str, Any]:
    """A run's saved config of an earlier release in today's keys, for comparing on resume.

    Those releases saved every method's settings under ``method:`` and silently ignored the ones
    the chosen method did not take; they are dropped here, as they had no effect.
    """
    tree = upgrade(tree, warn=False)
    method = tree.get("method")
    if isinstance(method, dict) and method.get("name") in METHODS:
        takes = set(method_settings(method["name"])) | {"name", "head"}
        tree["method"] = {k: v for k, v in method.items() if k in takes}
    return tree
