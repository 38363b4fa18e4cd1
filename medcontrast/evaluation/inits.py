"""The initialisations an evaluation compares: run folders, weight files, random weights."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch

from medcontrast.data.preprocessing import PreprocessSpec
from medcontrast.encoder_input import input_spec
from medcontrast.errors import MedContrastError
from medcontrast.evaluation.input_check import compare_inputs
from medcontrast.export import SPEC, WEIGHTS, load_encoder
from medcontrast.models.encoders import Encoder, EncoderSpec, build_from_spec
from medcontrast.models.weights import file_digest, load_weights


@dataclass
class InitConfig:
    """One entry of an evaluation config's ``inits:`` list: an initialisation to compare, a run
    folder, an exported encoder, or random weights (resolved into an :class:`Init`)."""

    name: str = ""
    source: str = (
        "random"  # "random", a run folder, or an encoder weight file (.pt/.pth/.safetensors)
    )
    encoder: str = ""  # needed for random and weight files; read from the run folder otherwise
    # Architecture options of a random or weight-file init. None: the same as a listed run folder
    # of the same encoder (so "random" is the same network, not a cheaper stem), else the default.
    stem_stride: int | None = None


@dataclass
class Init:
    """One initialisation: a name, what it is, and a factory of fresh encoders.

    ``make`` is a module-level function (bound with :func:`functools.partial`), so that an
    Init can be sent to a fine-tuning worker process.
    """

    name: str
    kind: str  # pretrained | weights | random
    spec: EncoderSpec
    source: str
    make: Callable[[int], Encoder]  # seed -> a new encoder (the seed only matters for random)
    notes: list[str]
    digest: str = ""  # SHA-256 of the weights it starts from (of the spec for random weights)

    @property
    def seeded(self) -> bool:
        """Whether ``make`` gives other weights for another seed (random weights), so that
        features of ``make(0)`` stand for no other seed's encoder."""
        return self.kind == "random"


def _spec_digest(spec: EncoderSpec) -> str:
    return hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode()).hexdigest()


def _load_file_into(encoder: Encoder, path: Path) -> list[str]:
    """Load a user's weight file (e.g. ImageNet timm weights) into an encoder's backbone; the
    lines that say what was loaded, adapted and left out (see :mod:`medcontrast.models.weights`)."""
    return load_weights(encoder, path).summary()


def resolve_inits(
    inits: list[InitConfig],
    data: PreprocessSpec,
    modalities: list[str] | None = None,
    on_mismatch: str = "error",
    warn: bool = True,
) -> list[Init]:
    """Turn config entries into :class:`Init` objects; add random init of the first architecture
    when none is listed (every comparison is against it).

    ``data``: the evaluation's preprocessing, checked against each pretrained run's (for
    samples of ``modalities``): a difference that changes the encoder's input is an error
    (``on_mismatch="error"``) or a warning (``"warn"``); a harmless one a warning. ``warn``:
    print the warnings (to stderr; they are kept in the Init's notes either way)."""
    ndim, size = data.ndim, list(data.size)
    if not inits:
        raise MedContrastError(
            "no initialisation to evaluate: list run folders or weight files in inits"
        )
    pretrained = _pretrained_specs(inits)
    out: list[Init] = []
    for item in inits:
        source = item.source or "random"
        if source == "random":
            if not item.encoder:
                raise MedContrastError("a random init needs encoder: (e.g. timm:resnet18)")
            spec = _spec_like(item, ndim, size, pretrained)
            out.append(
                Init(
                    item.name or "random",
                    "random",
                    spec,
                    "random",
                    partial(_make_random, spec),
                    [],
                    _spec_digest(spec),
                )
            )
            continue
        path = Path(source)
        if path.is_dir() or path.name == WEIGHTS:
            spec = _run_spec(path)
            if spec is None:
                raise MedContrastError(f"{source}: no {SPEC} (not a finished medcontrast run?)")
            _check_fits(spec, ndim, size, source)
            notes = _check_input(path, source, data, modalities, on_mismatch, warn)
            load_encoder(path)  # fail now, with the file named, if the weights do not fit
            name = item.name or (path.name if path.is_dir() else path.parent.name)
            weights = path / WEIGHTS if path.is_dir() else path
            out.append(
                Init(
                    name,
                    "pretrained",
                    spec,
                    str(path),
                    partial(_load_run, path),
                    notes,
                    file_digest(weights, weights.with_name(SPEC)),
                )
            )
        elif path.is_file():
            if not item.encoder:
                raise MedContrastError(
                    f"{source}: say which architecture it is with encoder: (e.g. timm:resnet18)"
                )
            spec = _spec_like(item, ndim, size, pretrained)
            notes = _load_file_into(build_from_spec(spec), path)
            name = item.name or path.stem
            make = partial(_make_from_file, spec, path)
            out.append(Init(name, "weights", spec, str(path), make, notes, file_digest(path)))
        else:
            raise MedContrastError(
                f"init source {source!r} is neither 'random', a run folder nor a file"
            )
    if not any(i.kind == "random" for i in out):
        spec = EncoderSpec(
            out[0].spec.name, ndim, 1, list(size), out[0].spec.stem_stride, dict(out[0].spec.kwargs)
        )
        out.append(
            Init(
                "random",
                "random",
                spec,
                "random",
                partial(_make_random, spec),
                ["added automatically: every initialisation is compared with it"],
                _spec_digest(spec),
            )
        )
    names = [i.name for i in out]
    if len(set(names)) != len(names):
        raise MedContrastError(f"initialisation names must differ: {names}")
    return out


def _run_spec(path: Path) -> EncoderSpec | None:
    """The encoder spec saved beside a run folder's (or an exported file's) weights, if any."""
    spec_file = (path if path.is_dir() else path.parent) / SPEC
    if not (path.is_dir() or path.name == WEIGHTS) or not spec_file.exists():
        return None
    return EncoderSpec.from_dict(json.loads(spec_file.read_text()))


def _pretrained_specs(inits: list[InitConfig]) -> dict[str, EncoderSpec]:
    """Encoder specs of the run folders / exported encoders listed, by encoder name."""
    specs: dict[str, EncoderSpec] = {}
    for item in inits:
        spec = None if item.source in ("", "random") else _run_spec(Path(item.source))
        if spec is not None:
            specs.setdefault(spec.name, spec)
    return specs


def _spec_like(
    item: InitConfig, ndim: int, size: list[int], pretrained: dict[str, EncoderSpec]
) -> EncoderSpec:
    """The spec of a random or weight-file init: architecture options from a pretrained run of
    the same encoder unless given, so that the comparison is between equal networks."""
    like = pretrained.get(item.encoder)
    stem = item.stem_stride if item.stem_stride is not None else (like.stem_stride if like else 2)
    kwargs = dict(like.kwargs) if like and item.stem_stride is None else {}
    return EncoderSpec(item.encoder, ndim, 1, list(size), stem, kwargs)


def _make_random(spec: EncoderSpec, seed: int) -> Encoder:
    """Random weights, drawn from ``seed``."""
    torch.manual_seed(seed)
    return build_from_spec(spec)


def _load_run(path: Path, _seed: int) -> Encoder:
    """The weights of a run folder or exported encoder (the same for every seed)."""
    return load_encoder(path)


def _make_from_file(spec: EncoderSpec, path: Path, _seed: int) -> Encoder:
    """The architecture ``spec`` with a user's weight file loaded (the same for every seed)."""
    encoder = build_from_spec(spec)
    _load_file_into(encoder, path)
    return encoder


def _check_input(
    path: Path,
    source: str,
    data: PreprocessSpec,
    modalities: list[str] | None,
    on_mismatch: str,
    warn: bool,
) -> list[str]:
    """The evaluation's preprocessing against the run's (:mod:`input_check`): an error for a
    difference that changes the encoder's input, unless ``on_mismatch`` is "warn"; the
    warnings' lines otherwise."""
    try:
        trained = input_spec(path)
    except MedContrastError:
        notes = [
            "preprocessing not recorded with the encoder (an older export, no config.yaml "
            "beside it): the evaluation's data settings could not be checked against it"
        ]
    else:
        diff = compare_inputs(trained, data, modalities)
        if diff.changing and on_mismatch == "error":
            raise MedContrastError(
                f"{source} would be evaluated on other inputs than it was pretrained on: "
                + "; ".join(diff.changing)
                + ". Make the evaluation's data settings agree (or set "
                "preprocessing_check=warn to evaluate so on purpose)"
            )
        notes = [f"input unlike pretraining: {c}" for c in diff.changing] + diff.harmless
    if warn:
        for note in notes:
            print(f"warning: {source}: {note}", file=sys.stderr)
    return notes


def _check_fits(spec: EncoderSpec, ndim: int, size: list[int], source: str) -> None:
    if spec.ndim != ndim:
        raise MedContrastError(f"{source} is a {spec.ndim}D encoder but data.ndim is {ndim}")
    if spec.in_channels != 1:
        raise MedContrastError(
            f"{source} expects {spec.in_channels} input channels; medcontrast images have 1"
        )
    if spec.size and list(spec.size) != list(size) and spec.name.split(":")[-1] in ("vit", "swin"):
        raise MedContrastError(
            f"data.size is {list(size)} but {source} was pretrained at data.size={spec.size} "
            f"and cannot take another size ({spec.name} has a fixed input size)"
        )
