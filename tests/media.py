"""Tiny test videos with audio, and ffprobe/ffmpeg/BestSource readers for encoded files."""
from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs

from tests.footage import CITY, source

core = vs.core

#: NTSC film rate: a frame duration that millisecond container timestamps cannot hold exactly.
FPS = Fraction(24000, 1001)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"needs {name} (scripts/setup.sh installs it)")
    return path


def city_clip(frames: int = 6, size: int = 64) -> vs.VideoNode:
    """``size``×``size`` crop of the real CC0 clip (YUV420P8), first ``frames`` frames, at 24000/1001 fps."""
    clip = core.std.CropAbs(source(CITY), width=size, height=size, left=320, top=160)[:frames]
    return core.std.AssumeFPS(clip, fpsnum=FPS.numerator, fpsden=FPS.denominator)


def write_video(path: Path, clip: vs.VideoNode, audio: bool = True) -> Path:
    """``clip`` losslessly (FFV1) into a Matroska file, with a 440 Hz FLAC track when ``audio``."""
    cmd = [tool("ffmpeg"), "-v", "error", "-y", "-f", "yuv4mpegpipe", "-i", "pipe:0"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-map", "0:v", "-map", "1:a",
                "-c:a", "flac", "-shortest"]
    cmd += ["-c:v", "ffv1", str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    clip.output(proc.stdin, y4m=True)
    proc.stdin.close()
    assert proc.wait() == 0, "ffmpeg could not write the test video"
    return path


def probe(path: Path) -> dict:
    """ffprobe's streams (frames counted) and format of ``path``."""
    out = subprocess.run(
        [tool("ffprobe"), "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, check=True, text=True).stdout
    return json.loads(out)


def streams(path: Path, kind: str) -> list[dict]:
    return [s for s in probe(path)["streams"] if s["codec_type"] == kind]


def audio_duration(path: Path) -> float:
    """End of the last audio packet, in seconds."""
    out = subprocess.run(
        [tool("ffprobe"), "-v", "error", "-select_streams", "a:0", "-show_entries", "packet=pts_time,duration_time",
         "-of", "csv=p=0", str(path)], capture_output=True, check=True, text=True).stdout
    last = [line.split(",") for line in out.split() if line][-1]
    return float(last[0]) + float(last[1])


def assert_frame_times(path: Path, count: int, fps: Fraction) -> None:
    """Every video frame of ``path`` sits at ``i / fps`` (Matroska stores milliseconds: within 0.5 ms)."""
    out = subprocess.run(
        [tool("ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts",
         "-show_entries", "stream=time_base", "-of", "json", str(path)], capture_output=True, check=True, text=True)
    info = json.loads(out.stdout)
    base = Fraction(info["streams"][0]["time_base"])
    times = sorted(int(p["pts"]) * base for p in info["packets"])
    assert len(times) == count
    tolerance = Fraction(1, 2000) if path.suffix == ".mkv" else Fraction(0)
    for i, t in enumerate(times):
        assert abs(t - times[0] - i / fps) <= tolerance, f"frame {i} at {float(t)} s, not {float(i / fps)} s"


def audio_md5(path: Path) -> str:
    """md5 of the decoded samples of the first audio stream."""
    return subprocess.run([tool("ffmpeg"), "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "md5", "-"],
                          capture_output=True, check=True, text=True).stdout.strip()


def frames(clip: vs.VideoNode) -> list[list[np.ndarray]]:
    return [[np.array(f[p], copy=True) for p in range(f.format.num_planes)] for f in clip.frames()]


def decode(path: Path) -> vs.VideoNode:
    return core.bs.VideoSource(str(path), cachemode=0)


def assert_same_frames(a: vs.VideoNode, b: vs.VideoNode) -> None:
    assert (a.format.id, a.width, a.height, a.num_frames) == (b.format.id, b.width, b.height, b.num_frames)
    for n, (x, y) in enumerate(zip(frames(a), frames(b))):
        for p, (u, v) in enumerate(zip(x, y)):
            assert np.array_equal(u, v), f"frame {n} plane {p} differs (max {np.abs(u.astype(int) - v).max()})"


def msvsr_weights(path: Path) -> Path:
    """PP-MSVSR with the spec's keyed weights, in the official container layout."""
    import paddle

    from tests.keyed import model_weights

    paddle.save({"generator": {k: paddle.to_tensor(v) for k, v in model_weights("msvsr").items()}}, str(path))
    return path


def random_weights(model: str, path: Path) -> Path:
    """``model``'s randomly initialised state dict as a plain ``.pdparams`` file."""
    import paddle

    from vsmsvsr.models import build_model

    paddle.save(build_model(model).state_dict(), str(path))
    return path
