"""Does an evaluation feed a pretrained encoder what it saw in pretraining?

The run's preprocessing (``encoder.json``, see :mod:`medcontrast.encoder_input`) is compared with
the evaluation's ``data:`` settings, field by field, as the images are actually computed: a
difference that changes the encoder's input (size, spacing, resize, the intensity scaling the
evaluated modalities get) is *changing*; one that leaves every input as it was (a CT window when
no CT is evaluated, ``auto`` against ``percentile`` for radiographs) is *harmless*. Each phrase
names both values and the setting that would make them agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medcontrast.data.preprocessing import PreprocessSpec


@dataclass
class InputDifferences:
    """Differences between a pretrained encoder's preprocessing and an evaluation's."""

    changing: list[str] = field(default_factory=list)
    harmless: list[str] = field(default_factory=list)


def _classes(modalities: list[str] | None) -> set[str]:
    # Intensity "auto" treats CT (Hounsfield units) apart from everything else; with no
    # modality filter both kinds may be evaluated.
    if not modalities:
        return {"CT", "other"}
    return {"CT" if m.upper() == "CT" else "other" for m in modalities}


def _intensity(spec: PreprocessSpec, kind: str) -> tuple:
    """What scaling a sample of ``kind`` gets (as :func:`preprocess` decides it)."""
    mode = spec.intensity
    if mode == "auto":
        mode = "window" if kind == "CT" else "percentile"
    if mode == "window":
        return ("window", tuple(spec.window))
    if mode == "percentile":
        return ("percentile", tuple(spec.percentiles))
    return (mode,)


def _describe(scaling: tuple) -> str:
    return scaling[0] if len(scaling) == 1 else f"{scaling[0]} {list(scaling[1])}"


def compare_inputs(
    trained: PreprocessSpec, now: PreprocessSpec, modalities: list[str] | None = None
) -> InputDifferences:
    """How the evaluation's preprocessing ``now`` differs from the encoder's ``trained``, for
    samples of ``modalities`` (None: any)."""
    out = InputDifferences()
    for name in ("ndim", "size", "spacing", "resize"):
        was, is_ = getattr(trained, name), getattr(now, name)
        if was != is_:
            out.changing.append(
                f"data.{name} is {_plain(is_)} but the encoder was pretrained with "
                f"data.{name}={_plain(was)}"
            )
    for kind in sorted(_classes(modalities)):
        was, is_ = _intensity(trained, kind), _intensity(now, kind)
        if was != is_:
            who = "CT" if kind == "CT" else "non-CT"
            out.changing.append(
                f"{who} images get intensity {_describe(is_)} but the encoder was pretrained "
                f"with {_describe(was)} (set data.intensity, data.window, data.percentiles as "
                "its run did)"
            )
    if not any("intensity" in c for c in out.changing):
        for name in ("intensity", "window", "percentiles"):
            was, is_ = getattr(trained, name), getattr(now, name)
            if was != is_:
                out.harmless.append(
                    f"data.{name} is {_plain(is_)}, the encoder's run had {_plain(was)}: the "
                    "same images for the modalities evaluated"
                )
    return out


def _plain(value) -> object:
    return list(value) if isinstance(value, tuple) else value
