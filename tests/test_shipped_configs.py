"""The shipped configs: each loads by name, and an installed wheel has them."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from shutil import ignore_patterns

import pytest

from medcontrast.config import EvaluateConfig, PretrainConfig, load_config, shipped_configs
from medcontrast.data.preprocessing import PreprocessSpec
from medcontrast.errors import MedContrastError
from medcontrast.evaluation.input_check import compare_inputs

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [(PretrainConfig, n) for n in sorted(shipped_configs("pretrain"))] + [
    (EvaluateConfig, n) for n in sorted(shipped_configs("evaluate"))
]


@pytest.mark.parametrize(("schema", "name"), SHIPPED, ids=lambda v: getattr(v, "kind", v))
def test_every_shipped_config_loads_by_name(schema, name):
    assert isinstance(load_config(schema, name), schema)


def test_the_shipped_configs_cover_the_datasets_and_the_gpu_example():
    assert {"pneumoniamnist", "adrenalmnist3d", "mednist", "phantoms_2d", "gpu_example"} <= set(
        shipped_configs("pretrain")
    )
    assert load_config(PretrainConfig, "gpu_example").train.precision == "bf16"


def test_an_unknown_name_lists_the_shipped_ones():
    with pytest.raises(MedContrastError, match=r"did you mean pneumoniamnist\?\); shipped: "):
        load_config(EvaluateConfig, "pneumonia")


def test_a_path_still_works_and_wins_over_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("mednist").write_text("train:\n  epochs: 3\n")
    assert load_config(PretrainConfig, "mednist").train.epochs == 3


def test_the_wheel_ships_the_configs_and_they_load_by_name(tmp_path):
    """Build the wheel, unpack it (what pip install does) and load each config by name there."""
    # From a copy: pip builds in the source tree, where an old build/ could lend stale files.
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "medcontrast", src / "medcontrast", ignore=ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(tmp_path), str(src)], check=True, timeout=600)
    (wheel,) = tmp_path.glob("medcontrast-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    names = [f"{s.kind} {n}" for s, n in SHIPPED]
    script = (
        "import sys, medcontrast\n"
        "from medcontrast.config import load_config, PretrainConfig, EvaluateConfig\n"
        "print(medcontrast.__file__)\n"
        "for line in sys.argv[1:]:\n"
        "    kind, name = line.split()\n"
        "    load_config(PretrainConfig if kind == 'pretrain' else EvaluateConfig, name)\n"
        "    print('loaded', kind, name)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", script, *names],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(str(site))  # the wheel's copy, not the checkout
    assert lines[1:] == [f"loaded {n}" for n in names]


def _commands(text: str, command: str) -> list[list[str]]:
    """The ``medcontrast <command>`` lines of a shell block (continuations joined), split."""
    joined = text.replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines()]
    return [
        shlex.split(line, comments=True)[2:]
        for line in lines
        if line.startswith(f"medcontrast {command} ")
    ]


def _load(schema, args: list[str]):
    name = args[args.index("--config") + 1]
    return load_config(schema, name, [a for a in args if "=" in a and not a.startswith("-")])


@pytest.mark.parametrize("guide", ["getting-started.md", "small-archive.md"])
def test_the_guides_evaluation_feeds_its_encoder_the_pretraining_inputs(guide):
    text = (ROOT / "docs" / guide).read_text()
    (pre,) = _commands(text, "pretrain")[:1]
    (ev,) = _commands(text, "evaluate")[:1]
    trained = PreprocessSpec.from_settings(_load(PretrainConfig, pre).data)
    cfg = _load(EvaluateConfig, ev)
    diff = compare_inputs(trained, PreprocessSpec.from_settings(cfg.data), cfg.data.modalities)
    assert diff.changing == [], diff.changing


@pytest.mark.parametrize("name", sorted(shipped_configs("evaluate")))
def test_each_shipped_evaluation_fits_the_shipped_pretraining_it_names(name):
    cfg = load_config(EvaluateConfig, name)
    runs = {
        f"{c.out_dir}/{c.name}": c
        for c in (load_config(PretrainConfig, n) for n in shipped_configs("pretrain"))
    }
    named = [runs[i.source] for i in cfg.inits if i.source in runs]
    assert named, "names no shipped run"
    for pre in named:
        diff = compare_inputs(
            PreprocessSpec.from_settings(pre.data),
            PreprocessSpec.from_settings(cfg.data),
            cfg.data.modalities,
        )
        assert diff.changing == [] and diff.harmless == [], (pre.name, diff)
