"""A tiny pretrained run to evaluate (two steps of SimCLR on the phantoms' radiographs).

Module-scoped, not shared across modules: ``test_faults`` rewrites its ``encoder.pth``.
"""

from __future__ import annotations

import pytest

from medcontrast.config import PretrainConfig, load_config
from medcontrast.pretrain import pretrain


@pytest.fixture(scope="module")
def tiny_run(phantom_manifest, tmp_path_factory):
    """(run folder, the folder holding its cache and runs)."""
    root = tmp_path_factory.mktemp("eval")
    cfg = load_config(
        PretrainConfig,
        None,
        [
            f"data.manifest={phantom_manifest}",
            "data.modalities=[CR,DX]",
            "data.size=[32,32]",
            f"data.cache_dir={root / 'cache'}",
            f"out_dir={root / 'runs'}",
            "name=tiny",
            "model.encoder=timm:resnet10t",
            "train.batch_size=8",
            "train.max_steps=2",
            "views.path=batched",
        ],
    )
    return pretrain(cfg, progress=False), root
