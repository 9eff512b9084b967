"""The command line as a process: signals (SIGINT, SIGTERM, to the process or its group) and
checks that come before any work."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.media import city_clip, msvsr_weights, write_video


@pytest.fixture(scope="module")
def job_files(tmp_path_factory) -> tuple[Path, Path]:
    """A 48-frame clip with audio and keyed PP-MSVSR weights: a job of a minute or more."""
    folder = tmp_path_factory.mktemp("job")
    return write_video(folder / "city.mkv", city_clip(frames=48)), msvsr_weights(folder / "ppmsvsr.pdparams")


def _default_signals() -> None:
    # A background job of a non-interactive shell (`nohup ... &`, CI) starts with SIGINT ignored,
    # and a child inherits that: give the job the dispositions of a terminal's foreground job.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _start_job(source: Path, weights: Path, output: Path, preexec) -> subprocess.Popen:
    """vsmsvsr-enhance on ``source`` into ``output``, in its own session; returns once the encoder
    is running (its temporary file exists beside ``output``). One pass (``--chunk_frames 0``): a
    chunked job's stop, which keeps its finished chunks, is tested in tests/pipeline/test_chunks.py."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vsmsvsr", "enhance", "--input", str(source), "-o", str(output),
         "--process_order", "PPMSVSR", "--PPMSVSR_weight", str(weights), "--num_frames", "2", "--cpu",
         "--chunk_frames", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, preexec_fn=preexec)
    deadline = time.monotonic() + 300
    while not any(".video.mkv" in p.name for p in output.parent.iterdir()):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            pytest.fail(f"the encoder never started: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _session_processes(sid: int) -> list[str]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid=,args="], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if int(line.split()[1]) == sid]


@pytest.mark.parametrize("signum, group", [(signal.SIGTERM, False), (signal.SIGTERM, True),
                                           (signal.SIGINT, False), (signal.SIGINT, True)],
                         ids=["TERM-process", "TERM-group", "INT-process", "INT-group"])
def test_signal_stops_the_job_cleanly(job_files, tmp_path, signum, group):
    source, weights = job_files
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "result.mkv"
    output.write_bytes(b"previous result")
    proc = _start_job(source, weights, output, _default_signals)
    try:
        time.sleep(1.0)
        assert proc.poll() is None, "the job ended before the signal"
        sent = time.monotonic()
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        proc.wait(timeout=120)
        stopped = time.monotonic() - sent
    finally:
        _stop(proc)
    stderr = proc.stderr.read().decode()
    assert proc.returncode == 128 + signum, stderr
    assert f"interrupted by {signal.Signals(signum).name}" in stderr
    assert "Traceback" not in stderr, stderr
    assert stopped < 60, f"took {stopped:.1f} s to stop"
    assert output.read_bytes() == b"previous result"
    assert sorted(p.name for p in out_dir.iterdir()) == ["result.mkv"]
    time.sleep(0.5)
    assert _session_processes(proc.pid) == []  # the encoder was ended too


def test_ignored_sigint_stays_ignored(job_files, tmp_path):
    """`cmd &` in a script: the shell meant Ctrl-C for itself, not for the job; SIGTERM still stops it."""
    source, weights = job_files
    output = tmp_path / "result.mkv"

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    proc = _start_job(source, weights, output, ignore_sigint)
    try:
        proc.send_signal(signal.SIGINT)
        time.sleep(2.0)
        assert proc.poll() is None, "an ignored SIGINT stopped the job"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        _stop(proc)
    assert proc.returncode == 143
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _read_only_mount(folder: Path) -> list[str]:
    """A command prefix running its command with ``folder`` mounted read-only (as root: a
    private mount namespace; otherwise plain permissions do it)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    return ["unshare", "-m", "sh", "-c",
            f"mount --bind '{folder}' '{folder}' && mount -o remount,bind,ro '{folder}' && exec \"$@\"", "sh"]


def test_unwritable_output_folder_is_refused_before_any_weights_are_read(job_files, tmp_path):
    source, _ = job_files
    folder = tmp_path / "readonly"
    folder.mkdir()
    bogus_weights = tmp_path / "never-read.pdparams"  # reading it would fail with another message
    bogus_weights.write_bytes(b"not a pickle")
    prefix = _read_only_mount(folder)
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "vsmsvsr", "enhance", "--input", str(source), "-o",
         str(folder / "sub" / "out.mkv"), "--process_order", "PPMSVSR", "--PPMSVSR_weight", str(bogus_weights)],
        capture_output=True, text=True, timeout=120)
    if os.geteuid() != 0:
        folder.chmod(0o755)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines[-1].startswith("vsmsvsr.enhance: cannot write"), proc.stderr
    assert "not writable" in lines[-1] and "never-read" not in proc.stderr
    assert list(folder.iterdir()) == []


def test_the_signal_tests_pass_when_the_suite_runs_with_sigint_ignored():
    """`nohup bash scripts/test.sh > log 2>&1 &`: every process of the suite starts with SIGINT
    ignored; the tests that send SIGINT set their child's dispositions, so they pass all the same."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/pipeline/test_job.py::test_ctrl_c_leaves_nothing"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout


def test_a_listing_piped_into_head_ends_quietly(tmp_path):
    proc = subprocess.run(f"'{sys.executable}' -m vsmsvsr weights list | head -1", shell=True, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, VSMSVSR_HOME=str(tmp_path)))
    assert proc.stdout.split()[:2] == ["MODEL", "STATUS"]
    assert proc.stderr == ""
