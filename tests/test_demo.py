"""The demo runs end to end, with the settings of the shipped phantoms_2d configs."""

from __future__ import annotations

from medcontrast.cli import main
from medcontrast.config import EvaluateConfig, PretrainConfig, load_config
from medcontrast.demo import demo_configs


def test_the_demo_reads_the_shipped_phantoms_2d_configs(tmp_path):
    pre, ev = demo_configs(tmp_path)
    shipped = load_config(PretrainConfig, "phantoms_2d")
    assert (pre.views, pre.method, pre.train) == (shipped.views, shipped.method, shipped.train)
    assert pre.data.manifest == str(tmp_path / "manifest.csv")
    assert ev.finetune == load_config(EvaluateConfig, "phantoms_2d").finetune
    assert [i.name for i in ev.inits] == ["simclr", "random"]


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
