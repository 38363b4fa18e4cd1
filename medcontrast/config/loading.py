"""Defaults <- a YAML file <- ``key=value`` overrides, checked against the schema.

Unknown keys are errors that name the key and suggest the closest known one; values are checked
against the dataclasses' annotations (harmless conversions such as int -> float are made).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from medcontrast.config.presets import DEFAULT_METHOD, with_method_preset, with_preset
from medcontrast.config.renamed import upgrade
from medcontrast.config.schema import ViewsConfig
from medcontrast.configs import shipped_configs
from medcontrast.errors import MedContrastError

C = TypeVar("C")

# a number in exponent form without a dot, which YAML 1.1 leaves as text: 1e9, 5E-4, -2e+3
_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert the harmless cases (int -> float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except MedContrastError as exc:
                errors.append(str(exc))
        raise MedContrastError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            value = [value] if not isinstance(value, dict) else value
            if isinstance(value, dict):
                raise MedContrastError(f"{key}: expected a list, got a mapping")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise MedContrastError(f"{key}: expected a mapping of settings, got {value!r}")
        if hasattr(tp, "variant_for"):  # a section whose keys depend on a choice (method.name)
            tp = tp.variant_for(value)
        return from_dict(tp, value, prefix=f"{key}.")
    if origin is typing.Literal and isinstance(value, bool):
        # YAML 1.1 reads on / off / yes / no as booleans: `views.compile=off` arrives as False
        for word in ("on" if value else "off", "true" if value else "false"):
            if word in typing.get_args(tp):
                return word
    if tp in (float, int) and isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
        # YAML 1.1 (PyYAML) reads 1e-4 and 1e9 as text: a number needs a dot there (1.0e-4)
        value = float(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MedContrastError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise MedContrastError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise MedContrastError(f"{key}: expected a whole number, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise MedContrastError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if value is None:
            return ""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise MedContrastError(f"{key}: expected text, got {value!r}")
        return value
    return value


def from_dict(cls: type[C], data: dict[str, Any], prefix: str = "") -> C:
    """Build dataclass ``cls`` from a (partial) mapping; unknown keys raise with a suggestion."""
    types_ = _field_types(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    if hasattr(cls, "check_keys"):  # the section checks its keys itself, with a better message
        cls.check_keys(list(data), prefix)
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise MedContrastError(
                f"unknown config key '{prefix}{key}'{hint}; known keys here: {', '.join(known)}"
            )
        kwargs[key] = _coerce(value, types_[key], prefix + key)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict of a config (for YAML)."""
    return dataclasses.asdict(cfg)


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["train.lr=0.1", "data.size=[32,32]"]`` into a nested dict (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise MedContrastError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise MedContrastError(f"override {item!r}: value is not valid YAML ({exc})") from exc
        _set_path(tree, key.strip(), value)
    return tree


def _find(path: str | Path, kind: str) -> tuple[str, str]:
    """``(where, text)`` of a config file given as a path, or as the name of a shipped one."""
    p = Path(path)
    if p.is_file():
        return str(p), p.read_text()
    shipped = shipped_configs(kind)
    if str(path) in shipped:
        return f"{kind} config {path!r} (shipped)", shipped[str(path)].read_text()
    close = difflib.get_close_matches(str(path), list(shipped), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    names = ", ".join(sorted(shipped)) or "none"
    raise MedContrastError(
        f"config file {p} does not exist, and it is not the name of a shipped {kind} config"
        f"{hint}; shipped: {names}"
    )


def _read_yaml(path: str | Path, kind: str) -> dict[str, Any]:
    where, text = _find(path, kind)
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise MedContrastError(f"config file {where} is not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise MedContrastError(f"config file {where} must hold a mapping of settings")
    return loaded


def load_config(cls: type[C], path: str | Path | None, overrides: list[str] | None = None) -> C:
    """Defaults <- YAML file <- ``key=value`` overrides, validated into ``cls``.

    ``path`` is a YAML file or the name of a shipped config of ``cls`` (``pneumoniamnist``: see
    :func:`medcontrast.configs.shipped_configs`). Relative paths inside the YAML
    (``data.manifest``, ``out_dir``) stay as written: they are interpreted from the current
    directory, like every other command-line path.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        tree = upgrade(_read_yaml(path, getattr(cls, "kind", "")))
    if overrides:
        over = upgrade(parse_overrides(overrides))
        tree = _deep_merge(_switching_method(tree, over), over)
    if isinstance(tree.get("views"), dict):
        tree["views"] = with_preset(tree["views"], "views.")
    if "method" in _field_types(cls):
        tree = with_method_preset(tree)
    return from_dict(cls, tree)


def _switching_method(tree: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``tree`` without its method's own settings when ``over`` names another method: they are
    settings of the file's method (``method.temperature`` of SimCLR means nothing to VICReg), so
    ``method.name=vicreg`` on a SimCLR config trains VICReg with its defaults; the head stays."""
    old, new = tree.get("method"), over.get("method")
    if not (isinstance(old, dict) and isinstance(new, dict) and "name" in new):
        return tree
    if str(new["name"]).lower() == str(old.get("name", DEFAULT_METHOD)).lower():
        return tree
    kept = {k: v for k, v in old.items() if k == "head"}
    return {**tree, "method": kept}


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (the run folder's ``config.yaml``)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def views_preset(name: str, **overrides: object) -> ViewsConfig:
    """A ViewsConfig from a preset, with explicit overrides (for use from Python)."""
    return from_dict(ViewsConfig, with_preset({"preset": name, **overrides}, "views."))
