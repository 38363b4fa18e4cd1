"""A folder's saved config read as today's code would have written it."""

from __future__ import annotations

import pytest
import yaml

from medcontrast.config import EvaluateConfig, save_config
from medcontrast.config.saved import as_saved, read_saved_evaluation
from medcontrast.errors import MedContrastError


def test_a_saved_config_reads_back_as_it_was_saved(tmp_path):
    cfg = EvaluateConfig(threshold="argmax", bootstrap=50)
    save_config(cfg, tmp_path / "config.yaml")
    assert as_saved(read_saved_evaluation(tmp_path / "config.yaml")) == as_saved(cfg)


def test_an_older_folder_keeps_its_meaning(tmp_path):
    """Saved before finetune.mode existed (plain fine-tuning then), with a key since dropped."""
    raw = as_saved(EvaluateConfig())
    del raw["finetune"]["mode"]
    raw["finetune"]["device"] = "cpu"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    cfg = read_saved_evaluation(tmp_path / "config.yaml")
    assert cfg.finetune.mode == "plain" and EvaluateConfig().finetune.mode == "both"


@pytest.mark.parametrize(
    ("text", "match"),
    [("threshold: sometimes\n", "config.yaml: threshold"), ("budgets: [1\n", "cannot read")],
)
def test_a_bad_saved_config_names_the_file(tmp_path, text, match):
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(MedContrastError, match=match):
        read_saved_evaluation(tmp_path / "config.yaml")
