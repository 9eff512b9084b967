"""The static-program cache: size cap with least-recently-used eviction, listing and clearing."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vsmsvsr.engine import programs


def _program(root: Path, model: str, name: str, size: int, age_s: float) -> Path:
    folder = root / model / name
    folder.mkdir(parents=True)
    (folder / "model.json").write_bytes(b"p" * (size - 10))
    (folder / "meta.json").write_bytes(b"m" * 10)
    used = time.time() - age_s
    os.utime(folder, (used, used))
    return folder


@pytest.mark.parametrize("text, size", [("4GB", 4 * 10**9), ("500 MB", 500 * 10**6), ("1.5GiB", int(1.5 * 2**30)),
                                        ("123", 123), ("0", 0), (2048, 2048)])
def test_sizes_are_parsed(text, size):
    assert programs.parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "-1", "4 parsecs", ""])
def test_bad_sizes_are_refused_naming_the_variable(text):
    with pytest.raises(ValueError, match=programs.LIMIT_ENV):
        programs.parse_size(text)


def test_default_cap_is_4_gb_and_zero_means_none(monkeypatch):
    monkeypatch.delenv(programs.LIMIT_ENV, raising=False)
    assert programs.cache_limit() == 4 * 10**9
    monkeypatch.setenv(programs.LIMIT_ENV, "0")
    assert programs.cache_limit() is None
    monkeypatch.setenv(programs.LIMIT_ENV, "1MB")
    assert programs.cache_limit() == 10**6


def test_least_recently_used_programs_go_first_and_those_in_use_stay(tmp_path):
    old = _program(tmp_path, "DeOldify-aaaa", "whole-1x3x512x512-1", 4000, age_s=300)
    in_use = _program(tmp_path, "DeOldify-aaaa", "whole-1x3x256x256-2", 4000, age_s=200)
    recent = _program(tmp_path, "PP-MSVSR-bbbb", "spynet-1x3x64x64-3", 4000, age_s=100)
    newest = _program(tmp_path, "PP-MSVSR-bbbb", "feat-1x3x64x64-4", 4000, age_s=0)
    assert [e.path for e in programs.list_programs(tmp_path)] == [old, in_use, recent, newest]
    removed = programs.enforce_limit(tmp_path, 8000, keep=[in_use])
    assert [e.path for e in removed] == [old, recent]
    assert sorted(p.name for p in (tmp_path / "DeOldify-aaaa").iterdir()) == [in_use.name]
    assert [e.path for e in programs.list_programs(tmp_path)] == [in_use, newest]
    # under the cap: nothing happens
    assert programs.enforce_limit(tmp_path, 8000) == [] and in_use.exists() and newest.exists()


def test_a_use_moves_a_program_to_the_back_of_the_queue(tmp_path):
    a = _program(tmp_path, "M-1", "a", 1000, age_s=100)
    b = _program(tmp_path, "M-1", "b", 1000, age_s=50)
    programs.mark_used(a)
    assert [e.path for e in programs.list_programs(tmp_path)] == [b, a]
    assert (a / "meta.json").read_bytes() == b"m" * 10  # marking rewrites nothing
    programs.enforce_limit(tmp_path, 1500)
    assert a.exists() and not b.exists()


def test_folders_being_written_are_neither_listed_nor_removed(tmp_path):
    _program(tmp_path, "M-1", "done", 1000, age_s=10)
    partial = tmp_path / "M-1" / ".export-xyz"
    partial.mkdir()
    (partial / "model.json").write_bytes(b"x" * 5000)
    assert [e.name for e in programs.list_programs(tmp_path)] == ["done"]
    programs.enforce_limit(tmp_path, 10)
    assert partial.exists()


def test_cli_lists_and_clears_the_cache(tmp_path):
    root = tmp_path / "static"
    _program(root, "DeOldify-aaaa", "whole-1", 3_000_000, age_s=10 * 86400)
    _program(root, "DeOldify-aaaa", "whole-2", 2_000_000, age_s=60)
    _program(root, "PP-MSVSR-bbbb", "spynet-1", 1_000_000, age_s=60)
    env = dict(os.environ, VSMSVSR_HOME=str(tmp_path), VSMSVSR_STATIC_CACHE_MAX="8GB")

    def cli(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "vsmsvsr", "cache", *args], env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    listing = cli("list").splitlines()
    assert listing[0].split() == ["MODEL", "PROGRAMS", "SIZE", "LAST", "USED"]
    rows = {line.split()[0]: line.split() for line in listing[1:-1]}
    assert rows["DeOldify-aaaa"][1:4] == ["2", "5.0", "MB"] and rows["PP-MSVSR-bbbb"][1:4] == ["1", "1.0", "MB"]
    assert listing[-1] == f"total 6.0 MB in 3 programs (cap 8.0 GB, VSMSVSR_STATIC_CACHE_MAX) at {root}"
    assert cli("clear", "--older-than", "7") == "removed 1 programs, 3.0 MB\n"
    assert cli("clear") == "removed 2 programs, 3.0 MB\n"
    assert list(root.iterdir()) == []


def test_an_export_over_the_cap_evicts_older_programs_not_its_own(tmp_path, monkeypatch):
    import paddle

    from vsmsvsr.engine import LayerRunner, choose_backend

    stale = _program(tmp_path, "Old-cccc", "whole-1", 200_000, age_s=3600)
    monkeypatch.setenv(programs.LIMIT_ENV, "150kB")  # less than the stale program alone
    net = paddle.nn.Conv2D(3, 8, 3, padding=1)
    run = LayerRunner(net, choose_backend("cpu"), label="Tiny", cache_dir=tmp_path)
    import numpy as np

    run(np.zeros((1, 3, 16, 16), np.float32))
    run(np.zeros((1, 3, 24, 24), np.float32))
    assert not stale.exists()
    assert run.store.exported == 2
    kept = [e for e in programs.list_programs(tmp_path)]
    assert len(kept) == 2 and all(e.model.startswith("Tiny-") for e in kept)  # in use: never evicted


def test_the_programs_of_an_engine_that_is_gone_may_be_evicted(tmp_path, monkeypatch):
    # A long process (a previewer reloading scripts, the test suite) must not pin every size it saw.
    import gc

    import numpy as np
    import paddle

    from vsmsvsr.engine import LayerRunner, choose_backend

    net = paddle.nn.Conv2D(3, 8, 3, padding=1)
    first = LayerRunner(net, choose_backend("cpu"), label="Tiny", cache_dir=tmp_path)
    first(np.zeros((1, 3, 16, 16), np.float32))
    (old,) = programs.list_programs(tmp_path)
    os.utime(old.path, (time.time() - 3600,) * 2)
    monkeypatch.setenv(programs.LIMIT_ENV, str(old.size + old.size // 2))  # room for one program
    del first
    gc.collect()
    second = LayerRunner(net, choose_backend("cpu"), label="Tiny", cache_dir=tmp_path)
    second(np.zeros((1, 3, 24, 24), np.float32))
    assert not old.path.exists()
    assert [e.path for e in programs.list_programs(tmp_path)] == list(second.store.used)
