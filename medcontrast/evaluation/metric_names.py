"""The names of the metrics an evaluation reports and the rules of its decision threshold, apart
from their scikit-learn code so that the config can check them without importing scikit-learn."""

from medcontrast.errors import MedContrastError

METRICS = (
    "auroc",
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "sensitivity",
    "specificity",
)


def parse_threshold(rule: str) -> float | None:
    """Check a threshold rule; returns the fixed threshold it names (None for youden, argmax)."""
    if rule in ("youden", "argmax"):
        return None
    try:
        value = float(rule)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise MedContrastError(f"threshold: {rule!r} is not youden, argmax or a number in (0, 1)")
    return value
