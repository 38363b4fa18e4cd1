import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medcontrast.cli import main, os_error_line


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


def _unwritable_commands(blocked: Path, manifest: Path, archive: Path) -> dict[str, list[str]]:
    """Each command with its output under ``blocked`` (a path that cannot become a folder)."""
    return {
        "pretrain": ["pretrain", f"data.manifest={manifest}", f"out_dir={blocked}"],
        "evaluate": [
            "evaluate",
            f"data.manifest={manifest}",
            f"out_dir={blocked}",
            "inits=[{source: random, encoder: 'timm:resnet10t'}]",
        ],
        "index": ["index", str(archive), "--out", str(blocked / "manifest.csv"), "--quiet"],
        "phantoms": ["phantoms", str(blocked), "--patients", "4", "--quiet"],
        "demo": ["demo", "--out", str(blocked), "--fast"],
    }


@pytest.mark.parametrize("command", ["pretrain", "evaluate", "index", "phantoms", "demo"])
@pytest.mark.parametrize("through", ["file", "file/sub"])
def test_an_unwritable_output_is_one_line_naming_it(
    command, through, phantom_manifest, phantom_archive, tmp_path, capsys
):
    (tmp_path / "file").write_text("not a folder")
    blocked = tmp_path / through
    argv = _unwritable_commands(blocked, phantom_manifest, phantom_archive)[command]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert str(tmp_path / "file") in err.splitlines()[-1]
    assert "is a file" in err or "a file stands" in err
    with pytest.raises(OSError):
        main(["--debug", *argv])


def _read_only_place(tmp_path: Path) -> Path:
    """A folder no one may write into: a locked one, or (as root, who writes anywhere) sysfs."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        return locked / "out"
    try:
        os.mkdir("/sys/medcontrast-write-check")
    except OSError:
        return Path("/sys/medcontrast-write-check")
    pytest.skip("no read-only place to write into on this machine")


@pytest.mark.parametrize("command", ["pretrain", "evaluate", "index"])
def test_a_read_only_output_is_one_line(
    command, phantom_manifest, phantom_archive, tmp_path, capsys
):
    place = _read_only_place(tmp_path)
    argv = _unwritable_commands(place, phantom_manifest, phantom_archive)[command]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert str(place) in err and ("permitted" in err or "Permission denied" in err)


def test_os_error_causes_are_worded():
    assert os_error_line(OSError(errno.ENOSPC, "No space left on device", "/out/last.pt")) == (
        "/out/last.pt: the disk is full"
    )
    assert os_error_line(OSError(errno.EACCES, "Permission denied", "/out")) == (
        "/out: Permission denied"
    )
