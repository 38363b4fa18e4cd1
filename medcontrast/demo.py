"""``medcontrast demo``: the whole product on the embedded phantom archive.

phantoms -> index -> SimCLR pretraining -> label-efficiency evaluation -> report, sized to finish
in under ten minutes on two CPU cores. The settings are the ones in
``configs/pretrain/phantoms_2d.yaml`` and ``configs/evaluate/phantoms_2d.yaml`` (a test keeps them
equal) and are written, resolved, into the output folder.
"""

from __future__ import annotations

import time
from pathlib import Path

from medcontrast.config import EvaluateConfig, PretrainConfig, from_dict, save_config, with_preset
from medcontrast.data.index import build_index, write_index
from medcontrast.data.phantoms import make_phantoms
from medcontrast.errors import MedContrastError

# The demo's pretraining: a small, fast encoder and views that undo the phantoms' nuisance
# (pose, body size, exposure, contrast curve, heel effect, blur, noise).
PRETRAIN = {
    "data": {"ndim": 2, "modalities": ["CR", "DX"], "size": [64, 64]},
    "views": {
        "path": "batched",
        "preset": "radiograph",
        "crop_scale": [0.8, 1.0],
        "flip_prob": 0.0,
        "affine_prob": 0.8,
        "rotate_deg": 8.0,
        "scale": 0.15,
        "translate": 0.06,
        "contrast_prob": 0.8,
        "gamma": [0.75, 1.35],
        "hist_shift_prob": 0.0,
        "scale_intensity_prob": 0.5,
        "shift_intensity_prob": 0.5,
        "bias_field_prob": 0.5,
        "bias_field_coeff": 0.1,
        "noise_prob": 0.5,
        "noise_std": 0.03,
        "blur_prob": 0.5,
        "blur_sigma": [0.3, 1.2],
        "dropout_prob": 0.0,
    },
    "model": {"encoder": "timm:regnetx_002"},
    "method": {"name": "simclr", "temperature": 0.2},
    "train": {
        "epochs": 30,
        "batch_size": 128,
        "lr": 0.004,
        "warmup_epochs": 3,
        "num_workers": 0,
        "log_every": 10,
        "checkpoint_every": 50,
    },
}

# Every initialisation is also fine-tuned at every budget (the strongest random baseline), with a
# short schedule so that the demo stays within minutes on two cores.
EVALUATE = {
    "data": {"ndim": 2, "modalities": ["CR", "DX"], "size": [64, 64]},
    "protocols": ["linear", "knn", "finetune"],
    "budgets": {"shots": [2, 5, 10, 25], "fractions": [1.0], "seeds": [0, 1, 2, 3, 4]},
    "views": {"preset": "radiograph"},
    "finetune": {
        "epochs": 10,
        "batch_size": 32,
        "min_steps_per_epoch": 5,
        "patience": 4,
    },
    "positive_class": "consolidation",
}


def _section(tree: dict, key: str) -> dict:
    return dict(tree.get(key, {}))


def demo_configs(out: Path, fast: bool = False) -> tuple[PretrainConfig, EvaluateConfig]:
    """The demo's two configs, pointed at the folders under ``out``."""
    pre = {k: dict(v) for k, v in PRETRAIN.items()}
    pre["data"].update(manifest=str(out / "manifest.csv"), cache_dir=str(out / "cache"))
    pre["out_dir"], pre["name"] = str(out / "runs"), "phantoms-simclr"
    ev = {k: (v.copy() if isinstance(v, dict | list) else v) for k, v in EVALUATE.items()}
    ev["data"].update(manifest=str(out / "manifest.csv"), cache_dir=str(out / "cache"))
    ev["out_dir"], ev["name"] = str(out / "eval"), "phantoms"
    ev["inits"] = [
        {"name": "simclr", "source": str(out / "runs" / "phantoms-simclr")},
        {"name": "random", "source": "random", "encoder": pre["model"]["encoder"]},
    ]
    if fast:
        pre["train"].update(epochs=2, batch_size=32)
        ev["budgets"] = {"shots": [2, 5], "fractions": [1.0], "seeds": [0, 1]}
        ev["finetune"] = {**ev["finetune"], "epochs": 2}
    pre["views"] = with_preset(pre["views"])
    ev["views"] = with_preset(ev["views"])
    return from_dict(PretrainConfig, pre), from_dict(EvaluateConfig, ev)


def run_demo(
    out: str | Path = "medcontrast-demo",
    patients: int = 300,
    seed: int = 0,
    fast: bool = False,
    progress: bool = True,
) -> Path:
    """Run every stage into ``out``; returns the path of report.html."""
    from medcontrast.evaluation.evaluate import evaluate
    from medcontrast.evaluation.report import headline_text
    from medcontrast.train import pretrain

    out = Path(out).resolve()
    archive = out / "archive"
    if out.exists() and any(p.name != "cache" for p in out.iterdir()):
        raise MedContrastError(f"{out} is not empty; remove it or give --out another folder")
    patients = min(patients, 60) if fast else patients
    start = time.time()

    def stage(text: str) -> None:
        print(f"\n[{time.time() - start:5.0f} s] {text}", flush=True)

    stage(f"1/4 writing the phantom archive ({patients} synthetic patients) to {archive}")
    summary = make_phantoms(archive, patients=patients, seed=seed, progress=progress)
    print(
        f"      {summary.radiographs} radiographs, {summary.volumes} volumes, "
        f"{summary.labeled} labeled samples"
    )
    stage("2/4 indexing the archive (read-only) into a manifest")
    result = build_index(archive, labels=archive / "labels.csv", workers=2, progress=progress)
    write_index(result, out / "manifest.csv", archive)
    print(result.summary())
    pre_cfg, ev_cfg = demo_configs(out, fast)
    save_config(pre_cfg, out / "pretrain.yaml")
    save_config(ev_cfg, out / "evaluate.yaml")
    stage(f"3/4 self-supervised pretraining (SimCLR, {pre_cfg.model.encoder}, labels hidden)")
    run = pretrain(pre_cfg, progress=progress)
    print(f"      run folder: {run}")
    stage("4/4 label-efficiency evaluation against random initialisation")
    folder = evaluate(ev_cfg, progress=progress)
    report = folder / "report.html"
    stage("done")
    print(headline_text(folder))
    print(f"\nSettings to rerun each stage: {out / 'pretrain.yaml'} and {out / 'evaluate.yaml'}")
    return report
