"""The demo runs end to end, and its settings are the ones in configs/."""

from __future__ import annotations

from pathlib import Path

import yaml

from medcontrast.cli import main
from medcontrast.config import EvaluateConfig, PretrainConfig, load_config, to_dict
from medcontrast.demo import demo_configs

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _comparable(tree: dict) -> dict:
    for section in ("data",):
        for key in ("manifest", "cache_dir"):
            tree[section].pop(key, None)
    tree.pop("out_dir", None)
    for init in tree.get("inits", []):
        init.pop("source", None)
    return tree


def test_demo_settings_match_the_config_files(tmp_path):
    pre, ev = demo_configs(tmp_path)
    pre_file = load_config(PretrainConfig, CONFIGS / "pretrain" / "phantoms_2d.yaml")
    ev_file = load_config(EvaluateConfig, CONFIGS / "evaluate" / "phantoms_2d.yaml")
    assert _comparable(to_dict(pre)) == _comparable(to_dict(pre_file))
    assert _comparable(to_dict(ev)) == _comparable(to_dict(ev_file))


def test_every_config_file_loads():
    for path in sorted(CONFIGS.glob("pretrain/*.yaml")):
        load_config(PretrainConfig, path)
    for path in sorted(CONFIGS.glob("evaluate/*.yaml")):
        load_config(EvaluateConfig, path)
    assert (
        yaml.safe_load((CONFIGS / "pretrain" / "gpu_example.yaml").read_text())["train"][
            "precision"
        ]
        == "bf16"
    )


def test_fast_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--fast"]) == 0
    printed = capsys.readouterr().out
    report = out / "eval" / "phantoms" / "report.html"
    assert report.exists() and str(report) in printed
    assert (out / "runs" / "phantoms-simclr" / "encoder.pth").exists()
    assert "random initialisation" in printed
    # The headline: labels saved, against the fine-tuned random initialisation.
    headline = printed.split("Headline", 1)[1]
    assert "Labels saved (simclr against the strongest random initialisation" in headline
    assert "the same network fine-tuned with the same recipe" in headline
    results = (out / "eval" / "phantoms" / "results.csv").read_text()
    assert "random,finetune,2-shot" in results and "random,finetune,100%" in results
    assert main(["demo", "--out", str(out), "--fast"]) == 2  # refuses to overwrite
