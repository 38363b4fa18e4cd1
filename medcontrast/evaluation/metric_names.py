"""The names of the metrics an evaluation reports, apart from their scikit-learn code so that
the config's defaults can list them without importing scikit-learn."""

METRICS = (
    "auroc",
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "sensitivity",
    "specificity",
)
