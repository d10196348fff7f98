"""``--shard K/N``: which files an exporter reads when N of them share one directory."""

from __future__ import annotations

import binascii
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.service import MONITOR

from exporter.source.shard import Shard, shard_of, watcher_for
from exporter.source.watcher import DirectoryWatcher

NAMES = [f"{prefix}-{i:05d}.h5" for prefix in ("binary", "packet", "datalog_2024_06_0")
         for i in range(400)]


@pytest.mark.parametrize(("text", "index", "count"), [("0/2", 0, 2), ("1/2", 1, 2),
                                                      (" 6 / 7 ", 6, 7), ("0/1", 0, 1)])
def test_parse(text: str, index: int, count: int) -> None:
    assert Shard.parse(text) == Shard(index, count)
    assert str(Shard.parse(text)) == f"{index}/{count}"


@pytest.mark.parametrize(("text", "reason"), [
    ("2/2", "shard 2 is not one of 0 to 1"), ("0/0", "at least 1"), ("-1/2", "is not K/N"),
    ("1", "is not K/N"), ("a/b", "is not K/N"), ("", "is not K/N")])
def test_parse_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Shard.parse(text)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_every_name_has_exactly_one_shard(count: int) -> None:
    shards = [Shard(k, count) for k in range(count)]
    for name in NAMES:
        owners = [s.index for s in shards if s.owns(name)]
        assert owners == [binascii.crc32(name.encode()) % count], name
    sizes = [sum(s.owns(n) for n in NAMES) for s in shards]
    assert min(sizes) > len(NAMES) / count * 0.8, sizes  # the hash spreads the files


def test_the_shard_of_a_name_is_the_same_in_every_process() -> None:
    code = ("import sys; from exporter.source.shard import shard_of; "
            "print(''.join(str(shard_of(n, 3)) for n in sys.argv[1:]))")
    here = "".join(str(shard_of(n, 3)) for n in NAMES[:200])
    for seed in ("1", "2"):
        other = subprocess.run([sys.executable, "-c", code, *NAMES[:200]], capture_output=True,
                               text=True, check=True, env={**os.environ, "PYTHONHASHSEED": seed})
        assert other.stdout.strip() == here


def test_sharded_watchers_split_one_directory(tmp_path: Path) -> None:
    names = NAMES[::37]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".hidden.h5").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    watchers = [watcher_for(tmp_path, "*.h5", Shard(k, 3), use_events=False) for k in range(3)]
    seen = [{c.path.name for c in w.scan() if c.kind == "new"} for w in watchers]
    assert set().union(*seen) == set(names)
    assert sum(len(s) for s in seen) == len(names)
    for k, files in enumerate(seen):
        assert files == {n for n in names if binascii.crc32(n.encode()) % 3 == k}
    victim = names[0]
    (tmp_path / victim).write_bytes(b"xy")
    changed = [[(c.kind, c.path.name) for c in w.scan()] for w in watchers]
    owner = binascii.crc32(victim.encode()) % 3
    assert changed[owner] == [("changed", victim)]
    assert all(changes == [] for k, changes in enumerate(changed) if k != owner)
    (tmp_path / victim).unlink()
    changed = [[(c.kind, c.path.name) for c in w.scan()] for w in watchers]
    assert changed[owner] == [("deleted", victim)]


def test_without_a_shard_the_watcher_sees_everything(tmp_path: Path) -> None:
    assert type(watcher_for(tmp_path, "*.h5", None)) is DirectoryWatcher
    assert type(watcher_for(tmp_path, "*.h5", Shard(0, 1))) is DirectoryWatcher


@pytest.mark.parametrize(("value", "reason"), [("2/2", "shard 2 is not one of 0 to 1"),
                                               ("one/two", "is not K/N")])
def test_serve_refuses_a_bad_shard_in_one_line(tmp_path: Path, value: str, reason: str) -> None:
    done = subprocess.run([MONITOR, "serve", "-i", str(tmp_path), "-o", str(tmp_path / "plots"),
                           "--shard", value], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--shard" in errors[0] and reason in errors[0], done.stderr
    assert "Traceback" not in done.stderr
