"""The preprocessed cache: the same array with one process or several, a bad file skipped and
reported (never fatal), a second build reusing the file, MedMNIST rows read from their archive,
a build stopped half-way resumed from its last complete shard."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medcontrast.archive.index import build_index, write_index
from medcontrast.data import cache as cache_module
from medcontrast.data.cache import build_cache
from medcontrast.data.manifest import read_manifest
from medcontrast.data.pool import ordered_map, pool_size
from medcontrast.data.preprocessing import PreprocessSpec
from medcontrast.data.selection import select_rows
from medcontrast.errors import MedContrastError

SPEC = PreprocessSpec(ndim=2, size=(16, 16))


@pytest.fixture()
def archive(tmp_path):
    """40 PNG exports and a MedMNIST-style .npz of 5 images (manifest rows 0-39 and 40-44)."""
    root = tmp_path / "archive"
    rng = np.random.default_rng(0)
    for i in range(40):
        (root / "png").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8)).save(
            root / "png" / f"{i:02d}.png"
        )
    np.savez(
        root / "tiny.npz",
        train_images=rng.integers(0, 255, (5, 28, 28), dtype=np.uint8),
        train_labels=np.zeros((5, 1), np.uint8),
    )
    out = tmp_path / "manifest.csv"
    write_index(build_index(root, progress=False), out, root)
    return root, read_manifest(out)


def _build(manifest, tmp_path, name, workers=1):
    rows = select_rows(manifest, ndim=2)
    return build_cache(manifest, rows, SPEC, tmp_path / name, workers=workers, progress=False)


@pytest.mark.parametrize("shard_rows", [1024, 2])
def test_one_process_or_two_give_the_same_array(archive, tmp_path, monkeypatch, shard_rows):
    # shards of 2 rows split the .npz's 5 images over three worker tasks
    monkeypatch.setattr("medcontrast.data.partial_cache.SHARD_ROWS", shard_rows)
    _, manifest = archive
    one, two = _build(manifest, tmp_path, "a"), _build(manifest, tmp_path, "b", workers=2)
    assert one.array.shape == (45, 1, 16, 16) and one.array.dtype == np.float16
    assert np.array_equal(np.asarray(one.array), np.asarray(two.array))
    assert list(one.rows["sample_id"]) == list(two.rows["sample_id"]) and not one.failed
    assert float(np.min(one.array)) >= 0 and float(np.max(one.array)) <= 1


def test_a_file_broken_after_indexing_is_left_out_and_named(archive, tmp_path):
    root, manifest = archive
    (root / "png" / "07.png").write_bytes(b"not a png any more")
    cache = _build(manifest, tmp_path, "c")
    assert len(cache) == len(cache.array) == 44
    ((sample, reason),) = cache.failed
    assert sample not in set(cache.rows["sample_id"]) and "07.png" in reason
    assert str(root) not in reason  # no archive path in what a run folder records


def test_a_second_build_reuses_the_cache_file(archive, tmp_path):
    _, manifest = archive
    first = _build(manifest, tmp_path, "d")
    stamp = first.path.stat().st_mtime_ns
    again = _build(manifest, tmp_path, "d")
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp
    assert np.array_equal(np.asarray(first.array), np.asarray(again.array))


def test_a_cache_file_that_does_not_match_its_settings_is_refused(archive, tmp_path):
    _, manifest = archive
    cache = _build(manifest, tmp_path, "d")
    meta_path = cache.path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "spec": "another"}))
    with pytest.raises(MedContrastError, match=r"cache .*\.npy holds .* delete the file"):
        _build(manifest, tmp_path, "d")
    meta_path.write_text(json.dumps(meta))
    np.save(cache.path, np.zeros((3, 1, 16, 16), np.float16))  # cut short
    with pytest.raises(MedContrastError, match=r"holds \(3, 1, 16, 16\)"):
        _build(manifest, tmp_path, "d")


REAL_WORK = cache_module._work


class KilledError(Exception):
    """Stands for the kill of a run (the build must leave what it finished on disk)."""


def _stopping_at(shard_to_stop: int | None, seen: list[int]):
    """_work that records the shards it is asked for and raises at ``shard_to_stop``."""

    def work(task):
        seen.append(task[0])
        if task[0] == shard_to_stop:
            raise KilledError
        return REAL_WORK(task)

    return work


def test_a_stopped_build_resumes_from_its_last_complete_shard(archive, tmp_path, monkeypatch):
    root, manifest = archive
    (root / "png" / "03.png").write_bytes(b"broken")  # fails in shard 0, done before the stop
    monkeypatch.setattr("medcontrast.data.partial_cache.SHARD_ROWS", 8)
    fresh = _build(manifest, tmp_path, "fresh")
    seen: list[int] = []
    monkeypatch.setattr(cache_module, "_work", _stopping_at(3, seen))
    with pytest.raises(KilledError):
        _build(manifest, tmp_path, "r")
    assert not list((tmp_path / "r").glob("*[0-9a-f].npy"))  # no finished cache yet
    assert len(list((tmp_path / "r").glob("*.partial.*"))) == 2
    seen.clear()
    monkeypatch.setattr(cache_module, "_work", _stopping_at(None, seen))
    resumed = _build(manifest, tmp_path, "r")
    # 45 rows in shards of 8: 0-2 were on disk, 3-5 are done now (shard 5 holds the .npz rows)
    assert sorted(set(seen)) == [3, 4, 5]
    assert np.array_equal(np.asarray(resumed.array), np.asarray(fresh.array))
    assert list(resumed.rows["sample_id"]) == list(fresh.rows["sample_id"])
    assert resumed.failed == fresh.failed and "03.png" in resumed.failed[0][1]
    assert not list((tmp_path / "r").glob("*.partial.*"))  # cleaned up


def _half_built(archive, tmp_path, monkeypatch) -> list[int]:
    """KilledError a build of shards of 8 at shard 2; the list the next build's shards go into."""
    _, manifest = archive
    monkeypatch.setattr("medcontrast.data.partial_cache.SHARD_ROWS", 8)
    monkeypatch.setattr(cache_module, "_work", _stopping_at(2, []))
    with pytest.raises(KilledError):
        _build(manifest, tmp_path, "h")
    seen: list[int] = []
    monkeypatch.setattr(cache_module, "_work", _stopping_at(None, seen))
    return seen


def test_a_half_built_cache_of_other_settings_is_started_over(
    archive, tmp_path, monkeypatch, capsys
):
    _, manifest = archive
    seen = _half_built(archive, tmp_path, monkeypatch)
    (log,) = (tmp_path / "h").glob("*.partial.jsonl")
    header, *lines = log.read_text().splitlines()
    log.write_text("\n".join([header.replace("16, 16", "16, 17"), *lines]) + "\n")
    rows = select_rows(manifest, ndim=2)
    cache = build_cache(manifest, rows, SPEC, tmp_path / "h", workers=1, progress=True)
    assert sorted(set(seen)) == [0, 1, 2, 3, 4, 5]  # nothing of the other build was kept
    assert "over: it was begun with other settings" in capsys.readouterr().err
    assert np.array_equal(
        np.asarray(cache.array), np.asarray(_build(manifest, tmp_path, "f").array)
    )


def test_a_torn_last_line_redoes_that_shard(archive, tmp_path, monkeypatch, capsys):
    _, manifest = archive
    seen = _half_built(archive, tmp_path, monkeypatch)
    (log,) = (tmp_path / "h").glob("*.partial.jsonl")
    text = log.read_text()
    log.write_text(text[: len(text) - 10])  # the line of shard 1, cut by the kill
    rows = select_rows(manifest, ndim=2)
    cache = build_cache(manifest, rows, SPEC, tmp_path / "h", workers=1, progress=True)
    assert sorted(set(seen)) == [1, 2, 3, 4, 5]
    assert "resuming the half-built cache" in capsys.readouterr().err
    assert np.array_equal(
        np.asarray(cache.array), np.asarray(_build(manifest, tmp_path, "f").array)
    )


def _square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("workers", [1, 2])
def test_ordered_map_keeps_the_order_with_few_tasks_in_flight(workers):
    taken = []

    def tasks():
        for i in range(40):
            taken.append(i)
            yield i

    results = ordered_map(_square, tasks(), workers, ahead=3)
    assert [next(results) for _ in range(2)] == [0, 1]
    assert len(taken) <= 2 + 3  # the pool asked for no more than ``ahead`` beyond what was read
    assert list(results) == [i * i for i in range(2, 40)]


def test_pool_size():
    assert pool_size(0) == pool_size(1) == 1 and pool_size(3) == 3
    assert pool_size("auto") >= 1


BUILD_SLOWLY = """
import sys, time
from medcontrast.data import cache, partial_cache
from medcontrast.data.manifest import read_manifest
from medcontrast.data.preprocessing import PreprocessSpec
from medcontrast.data.selection import select_rows

real = cache._work


def slow(task):
    time.sleep(0.5)
    return real(task)


if sys.argv[3] != "1":  # the build to be killed goes slowly; the one after it at full speed
    cache._work = slow
partial_cache.SHARD_ROWS = 4
manifest = read_manifest(sys.argv[1])
rows = select_rows(manifest, ndim=2)
side = int(sys.argv[4]) if len(sys.argv) > 4 else 16
spec = PreprocessSpec(ndim=2, size=(side, side))
cache.build_cache(manifest, rows, spec, sys.argv[2], workers=int(sys.argv[3]), progress=True)
"""


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_build_killed_with_its_workers_running_leaves_no_orphan_and_no_lock(archive, tmp_path):
    """kill -9 of the process building the cache in two workers: the workers die with it, and
    the next build neither waits for a lock nobody will release nor starts over."""
    script = tmp_path / "build.py"
    script.write_text(BUILD_SLOWLY)
    manifest, cache_dir = tmp_path / "manifest.csv", tmp_path / "c"
    cmd = [sys.executable, str(script), str(manifest), str(cache_dir)]
    proc = subprocess.Popen([*cmd, "2"], stderr=subprocess.PIPE, text=True)
    deadline, workers = time.time() + 60, []
    while time.time() < deadline and proc.poll() is None:
        logs = list(cache_dir.glob("*.partial.jsonl"))
        workers = _children(proc.pid)
        if logs and len(logs[0].read_text().splitlines()) >= 2 and len(workers) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None and len(workers) >= 2, proc.communicate()[1]
    proc.kill()
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.05)
    assert not [w for w in workers if _alive(w)], "the cache's workers outlived their parent"
    again = subprocess.run([*cmd, "1"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "waiting for another process" not in again.stderr
    assert "resuming the half-built cache" in again.stderr, again.stderr
    assert len(list(cache_dir.glob("*[0-9a-f].npy"))) == 1


def test_a_full_disk_stops_the_build_before_any_work_in_one_line(archive, tmp_path, monkeypatch):
    """Simulated: the space of the cache cannot be reserved (``ENOSPC``)."""

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("medcontrast.data.partial_cache.os.posix_fallocate", full)
    _, manifest = archive
    with pytest.raises(MedContrastError, match=r"no room for the cache .* data\.cache_dir"):
        _build(manifest, tmp_path, "full")
    assert sorted(p.suffix for p in (tmp_path / "full").iterdir()) == [".lock"]


def test_a_really_full_disk_is_one_line_not_a_sigbus(archive, tmp_path, small_disk):
    """45 images of 256 x 256 need 5.6 MiB on a 1 MiB disk: before, the memory-mapped array
    died by SIGBUS (exit 135, no message). In a process of its own, so that it cannot take
    the test session with it."""
    script = tmp_path / "build.py"
    script.write_text(BUILD_SLOWLY)
    cmd = [sys.executable, str(script), str(tmp_path / "manifest.csv"), str(small_disk), "1"]
    done = subprocess.run([*cmd, "256"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "no room for the cache" in done.stderr, done.stderr
    assert not list(small_disk.glob("*.npy"))


def test_hand_edited_rows_are_left_out_and_named_never_read(archive, tmp_path, capsys):
    """Rows index never writes: a source outside the archive (climbing out, or absolute), an
    unknown status, a usable row neither 2D nor 3D, a folder pseudonym the private map lacks.
    Each is left out and named; the others are cached; nothing outside the archive is read."""
    outside = tmp_path / "outside.png"
    Image.fromarray(np.full((20, 24), 7, np.uint8)).save(outside)
    path = tmp_path / "manifest.csv"
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    folder = table.at[5, "source"].split("/")[0]
    table.at[1, "source"] = "../outside.png"
    table.at[2, "source"] = str(outside)
    table.at[3, "status"] = "maybe"
    table.at[4, "ndim"] = "7"
    table.at[5, "source"] = table.at[5, "source"].replace(folder, "dir-0000000000000000")
    table.to_csv(path, index=False)
    capsys.readouterr()
    manifest = read_manifest(path)
    err = capsys.readouterr().err
    assert "4 row(s) left out: line 3 (" in err and "outside the archive root" in err, err
    assert "and 1 more" in err and str(outside) not in err
    cache = _build(manifest, tmp_path, "edited")
    assert len(cache.rows) + len(cache.failed) == 45 - 4
    assert [sid for sid, _ in cache.failed] == [table.at[5, "sample_id"]]
    assert "dir-0000000000000000" in cache.failed[0][1]
    left_out = set(table.loc[1:4, "sample_id"])  # never tried: neither kept nor failed
    assert not left_out & (set(cache.rows["sample_id"]) | {sid for sid, _ in cache.failed})
