"""Helper of test_ray.py, run inside a network namespace that has only loopback (``unshare -n``):
a two-node Ray cluster on 127.0.0.1, an enhance job on it through the object store, then the
same job with shared paths while one worker is killed in the middle of a chunk.

    python -m tests.pipeline.ray_cluster_job PORT RESULT.json -- ENHANCE ARGS (without -o)

Writes ``RESULT.json``: per job its exit status, stderr tail, output path, and whether a worker
was killed. Every listener is on 127.0.0.1; the namespace has no other interface.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path


def _ray(*args: str) -> subprocess.CompletedProcess:
    ray = str(Path(sys.executable).with_name("ray"))
    return subprocess.run([ray, *args], capture_output=True, text=True, timeout=300)


def _with_token() -> None:
    """Ray 2.5x+ clusters started with ``ray start`` authenticate with a token: the nodes and the
    job's driver (children of this process) share one, through the environment."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))


def _chunk_workers() -> list[int]:
    """PIDs of Ray workers running a chunk task now (Ray names them after the task)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"_render_chunk" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _job(args: list[str], out: Path, kill_worker: bool) -> dict:
    proc = subprocess.Popen([sys.executable, "-m", "vsmsvsr", "enhance", *args, "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed = None
    if kill_worker:
        # kill a worker once it is a few seconds into a chunk (its graph built, frames rendering)
        seen: dict[int, float] = {}
        while proc.poll() is None and killed is None:
            now = time.monotonic()
            for pid in _chunk_workers():
                seen.setdefault(pid, now)
                if now - seen[pid] > 3:
                    os.kill(pid, signal.SIGKILL)
                    killed = pid
                    break
            time.sleep(0.1)
    _, err = proc.communicate(timeout=1200)
    return {"rc": proc.returncode, "stderr": err[-4000:], "out": str(out), "killed": killed}


def main() -> int:
    port, result = sys.argv[1], Path(sys.argv[2])
    enhance_args = sys.argv[sys.argv.index("--") + 1:]
    address = f"127.0.0.1:{port}"
    _with_token()
    results: dict = {}
    try:
        head = _ray("start", "--head", "--node-ip-address", "127.0.0.1", "--port", port, "--num-cpus", "1",
                    "--include-dashboard=false", "--disable-usage-stats")
        results["head"] = {"rc": head.returncode, "stderr": head.stderr[-2000:]}
        node = _ray("start", "--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                    "--disable-usage-stats")
        results["node"] = {"rc": node.returncode, "stderr": node.stderr[-2000:]}
        status = _ray("status", "--address", address)
        results["nodes"] = status.stdout.count("node_")
        folder = result.parent
        results["object_store"] = _job([*enhance_args, "--ray", address], folder / "ray_object.mkv", False)
        results["shared"] = _job([*enhance_args, "--ray", address, "--ray_shared"], folder / "ray_shared.mkv", True)
        # every listening TCP socket of the namespace
        listen = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
        results["listeners"] = sorted({line.split()[3].rsplit(":", 1)[0] for line in listen.splitlines() if line})
    finally:
        _ray("stop", "--force")
        result.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
