"""vsmsvsr-enhance --ray: the same job on a two-node Ray cluster gives the single-machine file,
through the object store and with shared paths, also when a worker dies in the middle of a chunk.

The cluster runs in a fresh network namespace with only loopback (``unshare -n``): Ray's agents
bind to the machine's interface even with ``--node-ip-address 127.0.0.1``, and a test must never
listen on anything but 127.0.0.1.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.media import city_clip, msvsr_weights, streams, write_video
from tests.pipeline.test_chunks import _same_file_content

ray = pytest.importorskip("ray", reason="vsmsvsr[ray] is not installed")


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs unshare -n (root) and ip to keep Ray on loopback")
def test_two_node_ray_cluster_gives_the_single_pass_file(tmp_path):
    src = write_video(tmp_path / "city.mkv", city_clip(frames=12))
    weights = msvsr_weights(tmp_path / "ppmsvsr_keyed.pdparams")
    args = ["--input", str(src), "--process_order", "PPMSVSR", "--PPMSVSR_weight", str(weights), "--num_frames", "2",
            "--chunk_frames", "4", "--cpu", "--lossless", "-q"]
    single = tmp_path / "single.mkv"
    proc = subprocess.run([sys.executable, "-m", "vsmsvsr", "enhance", *args, "--chunk_frames", "0", "-o", str(single)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    result = tmp_path / "result.json"
    script = (f"ip link set lo up && exec {sys.executable} -m tests.pipeline.ray_cluster_job 6390 {result} -- "
              + " ".join(args))
    done = subprocess.run(["unshare", "-n", "bash", "-c", script], capture_output=True, text=True, timeout=1500,
                          cwd=Path(__file__).resolve().parents[2])
    assert result.exists(), done.stderr[-3000:]
    r = json.loads(result.read_text())
    assert r["head"]["rc"] == 0 and r["node"]["rc"] == 0, r
    # every socket the cluster listens on is on the loopback address
    assert r["listeners"] and set(r["listeners"]) <= {"127.0.0.1", "[::1]", "[::ffff:127.0.0.1]"}, r["listeners"]

    obj = r["object_store"]
    assert obj["rc"] == 0, obj["stderr"]
    assert "3 chunk(s) of up to 4 frames" in obj["stderr"] and "on Ray (127.0.0.1:6390)" in obj["stderr"]
    _same_file_content(single, Path(obj["out"]))

    shared = r["shared"]
    assert shared["rc"] == 0, shared["stderr"]
    assert shared["killed"], "no worker was seen running a chunk"
    _same_file_content(single, Path(shared["out"]))
    assert int(streams(Path(shared["out"]), "video")[0]["nb_read_frames"]) == 12
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # job folders removed
