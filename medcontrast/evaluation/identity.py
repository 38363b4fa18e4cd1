"""What an evaluation folder's results depend on, and what is done when it changed.

A folder's rows keep their meaning as long as three things stay the same: the settings that are
not mere schedule (checked against the saved ``config.yaml``), the weights of each
initialisation and the manifest's rows (checked against the SHA-256 digests recorded in
``inits.json`` and ``dataset.json``). A changed setting needs another folder; changed weights or
a changed manifest have their features, predictions and rows recomputed, or the run refused.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from medcontrast.errors import MedContrastError
from medcontrast.evaluation.folder import DATASET, INITS, RESULTS, feature_path, safe_name
from medcontrast.evaluation.inits import Init
from medcontrast.evaluation.results_file import read_results, write_results
from medcontrast.runs import config_changes

# Keys that only choose which runs to do (changing them adds or skips rows), or that only the
# report reads (it recomputes every figure from the saved predictions): the rows already computed
# keep their meaning, so a folder may be continued with other values.
_SCHEDULE_KEYS = (
    ("protocols",),
    ("budgets", "seeds"),
    ("finetune", "budgets"),
    ("finetune", "parallel"),
    ("metrics",),
    ("threshold",),
    ("positive_class",),
    ("bootstrap",),
    ("embedding_plot",),
    ("retrieval_queries",),
    ("on_change",),
    ("preprocessing_check",),  # a check before anything runs; the rows are the same
    ("device",),  # where the runs happen: a folder begun on one machine continues on another
)


def _identity(saved: dict) -> dict:
    """The settings that give results.csv rows their meaning (all but the schedule keys)."""
    out = copy.deepcopy(saved)
    for *parents, key in _SCHEDULE_KEYS:
        node = out
        for part in parents:
            node = node.get(part, {})
        node.pop(key, None)
    return out


def check_same_settings(folder: Path, previous: dict, now: dict) -> None:
    """Refuse to continue a folder whose results were computed with other settings: ``previous``
    is its saved config and ``now`` today's, both resolved on this machine and as their YAML
    files hold them."""
    changes = config_changes(_identity(previous), _identity(now))
    if changes:
        listed = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in changes.items())
        raise MedContrastError(
            f"{folder} holds an evaluation with other settings ({listed}); choose another name="
        )


def recorded_digests(folder: Path) -> tuple[str, dict[str, str]]:
    """The manifest's and each initialisation's digests a folder's results were computed with
    ("" where an older folder did not record one)."""
    manifest, inits = "", {}
    if (folder / DATASET).exists():
        manifest = json.loads((folder / DATASET).read_text()).get("manifest_sha256", "")
    if (folder / INITS).exists():
        inits = {i["name"]: i.get("sha256", "") for i in json.loads((folder / INITS).read_text())}
    return manifest, inits


def forget_changed(
    folder: Path,
    before: tuple[str, dict[str, str]],
    inits: list[Init],
    manifest_sha256: str,
    on_change: str,
) -> pd.DataFrame:
    """Drop the rows, features and predictions of initialisations whose weights changed (of
    all, when the manifest changed) since they were computed, or refuse when asked to.

    Returns the complete runs' rows of ``results.csv`` that stay valid.
    """
    manifest, digests = before
    results = folder / RESULTS
    done = read_results(results, repair=True)
    if manifest and manifest != manifest_sha256:
        changed = sorted(set(done["init"]) | set(digests))
        why = "the manifest changed"
    else:
        changed = [i.name for i in inits if digests.get(i.name) not in ("", None, i.digest)]
        why = "their weights changed"
        unknown = sorted(set(done["init"]) & {n for n, d in digests.items() if not d})
        if unknown:
            print(
                f"note: {folder} predates weight digests; the results of {', '.join(unknown)} "
                "are taken to be of the weights listed now",
                file=sys.stderr,
            )
    if not changed:
        return done
    if on_change == "refuse":
        raise MedContrastError(
            f"{folder}: {why} since results were computed for {', '.join(changed)}; "
            "set on_change=recompute to redo them, or choose another name="
        )
    print(f"note: {why} since {folder} was computed: redoing {', '.join(changed)}", file=sys.stderr)
    done = done[~done["init"].isin(changed)]
    write_results(results, done)
    for name in changed:
        feature_path(folder, name).unlink(missing_ok=True)
        shutil.rmtree(folder / "predictions" / safe_name(name), ignore_errors=True)
    return done
