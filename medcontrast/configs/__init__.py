"""The YAML configs shipped with medcontrast: ``pretrain/<name>.yaml`` and ``evaluate/<name>.yaml``.

Read through importlib.resources, so an installed wheel has them as well as a checkout, and
``--config pneumoniamnist`` finds one by name. Light to import: the command line lists the names
in its help without loading torch.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable


def shipped_configs(kind: str) -> dict[str, Traversable]:
    """The shipped configs of ``kind`` (``pretrain`` or ``evaluate``) by name (the file name
    without ``.yaml``); empty for another kind."""
    folder = resources.files(__name__) / kind
    if not kind or not folder.is_dir():
        return {}
    return {
        f.name.removesuffix(".yaml"): f
        for f in folder.iterdir()
        if f.is_file() and f.name.endswith(".yaml")
    }
