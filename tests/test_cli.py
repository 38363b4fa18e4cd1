import subprocess
import sys

from medcontrast.cli import main


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["pretrain", "train.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown config key") and "Traceback" not in err
    assert main(["evaluate", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["index", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.csv")]) == 2
    assert main(["phantoms", str(tmp_path / "p"), "--patients", "2"]) == 2


def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "medcontrast.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    for command in ("phantoms", "index", "pretrain", "evaluate", "demo"):
        assert command in out.stdout
