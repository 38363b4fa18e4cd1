"""What a pretrained encoder was pretrained on, and whether that pool held this task's test images.

An evaluation can take an encoder pretrained on another manifest (an archive-wide pool). The
report names that pool by its manifest's SHA-256 and sample count (never by patient or path) and
counts the evaluation's test images found in it (pixel fingerprints, see
:mod:`medcontrast.data.fingerprints`): pretraining that saw the test images, even unlabeled,
makes the test figures optimistic.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medcontrast.data.fingerprints import POOL_FINGERPRINTS, count_shared, image_fingerprints
from medcontrast.evaluation.inits import Init


def run_folder_of(init: Init) -> Path | None:
    """The pretraining run folder an init's weights came from, when it is one."""
    if init.kind != "pretrained":
        return None
    path = Path(init.source)
    folder = path if path.is_dir() else path.parent
    return folder if (folder / "data.json").is_file() else None


def pretrained_on(
    init: Init,
    manifest_sha256: str,
    preprocess: str,
    n_test: int,
    test: Callable[[], np.ndarray],
) -> dict | None:
    """The pool of a pretrained init and its overlap with the test split; None for random
    weights and weight files (their pretraining data is not known here).

    Args:
        manifest_sha256: the evaluation's manifest digest.
        preprocess: the evaluation's preprocessing key (fingerprints compare only alike).
        n_test: how many test images the evaluation has.
        test: the fingerprints of the evaluation's test images (computed on first need, once
            for every init: see :func:`test_fingerprints`).
    """
    if init.kind == "random":
        return None
    folder = run_folder_of(init)
    if folder is None:
        return {"known": False, "text": "pretraining data not recorded with these weights"}
    data = json.loads((folder / "data.json").read_text())
    sha = str(data.get("manifest_sha256", ""))
    out = {
        "known": True,
        "manifest_sha256": sha,
        "samples": int(data.get("samples", 0)),
        "same_manifest": sha == manifest_sha256,
        "test_images": n_test,
        "test_overlap": None,
    }
    prints = folder / POOL_FINGERPRINTS
    if prints.is_file() and data.get("preprocess") == preprocess:
        out["test_overlap"] = count_shared(prints, test())
    elif prints.is_file():
        out["overlap_unknown"] = "the pool was preprocessed otherwise (data.size or intensity)"
    else:
        out["overlap_unknown"] = "the run recorded no fingerprints (an older medcontrast)"
    out["text"] = describe(out)
    return out


def test_fingerprints(images: np.ndarray, test: np.ndarray) -> Callable[[], np.ndarray]:
    """The fingerprints of ``images[test]`` ((N, C, *size) as cached, the test split's indices),
    computed the first time they are asked for and kept for the next init."""
    return functools.cache(lambda: image_fingerprints(images, test))


def describe(info: dict) -> str:
    """One line for the report's table of initialisations."""
    if not info.get("known"):
        return info.get("text", "")
    own = " (this evaluation's manifest)" if info["same_manifest"] else ""
    text = f"manifest {info['manifest_sha256'][:12]}{own}, {info['samples']:,} images"
    if info["test_overlap"] is None:
        return f"{text}; overlap with the test split not checked: {info['overlap_unknown']}"
    return f"{text}; {info['test_overlap']} of {info['test_images']:,} test images in it"


def overlap_caveats(inits: list[dict]) -> list[str]:
    """Report caveats for inits whose pretraining pool held test images."""
    lines = []
    for i in inits:
        info = i.get("pretrained_on") or {}
        if info.get("test_overlap"):
            lines.append(
                f"Caution: {info['test_overlap']} of the {info['test_images']:,} test images were "
                f"in the pool `{i['name']}` was pretrained on (unlabeled, pixel-identical): its "
                "test figures may be optimistic. Pretrain without the test split to be sure."
            )
    return lines
