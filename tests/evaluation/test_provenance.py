"""Cross-manifest evaluation: the report names the pool an encoder was pretrained on and flags
the test images that pool held."""

from __future__ import annotations

import json

import pandas as pd

from medcontrast.config import EvaluateConfig, PretrainConfig, load_config
from medcontrast.evaluate import evaluate
from medcontrast.pretrain import pretrain


def _pool(phantom_manifest, tmp_path):
    """An archive-wide pool made from the phantom manifest: labels hidden, every split kept."""
    table = pd.read_csv(phantom_manifest, dtype=str, keep_default_na=False)
    table["label"] = ""
    pool = tmp_path / "pool.csv"
    table.to_csv(pool, index=False)
    (tmp_path / "pool.json").write_text(phantom_manifest.with_suffix(".json").read_text())
    return pool


def _eval(manifest, root, run, name, *extra) -> EvaluateConfig:
    return load_config(
        EvaluateConfig,
        None,
        [
            f"data.manifest={manifest}",
            "data.modalities=[CR,DX]",
            "data.size=[32,32]",
            f"data.cache_dir={root / 'cache'}",
            f"out_dir={root / 'eval'}",
            f"name={name}",
            f"inits=[{{name: ssl, source: '{run}'}}]",
            "protocols=[linear]",
            "budgets.fractions=[1.0]",
            "budgets.seeds=[0]",
            "bootstrap=20",
            "embedding_plot=false",
            "retrieval_queries=0",
            *extra,
        ],
    )


def _pretrained_on(folder) -> dict:
    inits = json.loads((folder / "inits.json").read_text())
    assert [i["pretrained_on"] is None for i in inits] == [False, True]  # ssl, random
    return inits[0]["pretrained_on"]


def test_an_encoder_from_another_manifest_is_named_and_its_test_overlap_counted(
    phantom_manifest, tiny_run, tmp_path
):
    run, root = tiny_run
    # pretrained on the evaluation's own manifest, train and val only: no test image seen
    own = _pretrained_on(evaluate(_eval(phantom_manifest, root, run, "own"), progress=False))
    assert own["same_manifest"] and own["test_overlap"] == 0 and own["samples"] > 0
    # pretrained on a pool that holds every split, the test images included
    pool = _pool(phantom_manifest, tmp_path)
    wide = pretrain(
        load_config(
            PretrainConfig,
            None,
            [
                f"data.manifest={pool}",
                "data.modalities=[CR,DX]",
                "data.size=[32,32]",
                "data.splits=[train,val,test]",
                f"data.cache_dir={root / 'cache'}",
                f"out_dir={tmp_path / 'runs'}",
                "name=pool",
                "model.encoder=timm:resnet10t",
                "train.batch_size=8",
                "train.max_steps=1",
            ],
        ),
        progress=False,
    )
    folder = evaluate(_eval(phantom_manifest, root, wide, "pool"), progress=False)
    info = _pretrained_on(folder)
    data = json.loads((wide / "data.json").read_text())
    assert not info["same_manifest"] and info["manifest_sha256"] == data["manifest_sha256"]
    assert info["test_overlap"] == info["test_images"] > 0
    report = (folder / "report.md").read_text()
    assert data["manifest_sha256"][:12] in report
    assert f"Caution: {info['test_images']} of the {info['test_images']} test images" in report
    # another preprocessing (on purpose): the overlap cannot be told, and the report says so
    cfg = _eval(
        phantom_manifest, root, wide, "size", "data.size=[24,24]", "preprocessing_check=warn"
    )
    other = _pretrained_on(evaluate(cfg, progress=False))
    assert other["test_overlap"] is None and "preprocessed otherwise" in other["text"]
