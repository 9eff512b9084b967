"""Chunked, resumable vsmsvsr-enhance jobs: the same file as one pass (lossless: the same frames,
rate, colour tags and audio), resume after SIGKILL without recomputing finished chunks, settings
changes refused, damaged segments redone, --verify."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
import vapoursynth as vs

from tests.media import (FPS, assert_same_frames, audio_md5, city_clip, decode, msvsr_weights, random_weights, streams,
                         write_video)
from vsmsvsr import pipeline
from vsmsvsr.pipeline import chunks as chunks_mod
from vsmsvsr.pipeline.chunks import Chunk, ChunkOptions, chunk_table, default_chunk_frames, job_folder
from vsmsvsr.pipeline.encode import FrameHasher, frame_bytes, frame_hash

core = vs.core


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("chunk-media")


@pytest.fixture(scope="module")
def clip24(media) -> Path:
    """24 frames, 64x64, 24000/1001 fps, FFV1 + FLAC."""
    return write_video(media / "city24.mkv", city_clip(frames=24))


@pytest.fixture(scope="module")
def weights(media) -> Path:
    return msvsr_weights(media / "ppmsvsr_keyed.pdparams")


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vsmsvsr", "enhance", *args], capture_output=True, text=True,
                          timeout=900, **kwargs)


def _ppmsvsr(src: Path, out: Path, weights: Path, *extra: str) -> list[str]:
    return ["--input", str(src), "-o", str(out), "--process_order", "PPMSVSR", "--PPMSVSR_weight", str(weights),
            "--num_frames", "2", "--cpu", "--lossless", "-q", *extra]


def _same_file_content(a: Path, b: Path) -> None:
    """Two outputs hold the same frames, rate, colour tags and audio."""
    assert_same_frames(decode(a), decode(b))
    (va,), (vb,) = streams(a, "video"), streams(b, "video")
    for key in ("width", "height", "nb_read_frames", "r_frame_rate", "avg_frame_rate", "color_range", "color_space",
                "color_primaries", "color_transfer", "pix_fmt"):
        assert va.get(key) == vb.get(key), key
    assert audio_md5(a) == audio_md5(b)


# --------------------------------------------------------------------------------------------
# the parts


def test_chunk_table_covers_the_clip_in_whole_chunks():
    assert chunk_table(10, 4) == (Chunk(0, 0, 4), Chunk(1, 4, 8), Chunk(2, 8, 10))
    assert chunk_table(8, 4)[-1] == Chunk(1, 4, 8)
    assert chunk_table(3, 100) == (Chunk(0, 0, 3),)
    assert Chunk(7, 0, 4).segment == "chunk-00007.mkv"


def test_default_chunks_are_whole_upscale_windows():
    s = pipeline.EnhanceSettings(process_order=("PPMSVSR",), num_frames=10)
    assert default_chunk_frames(s) == 100
    assert default_chunk_frames(pipeline.EnhanceSettings(process_order=("DAIN", "PPMSVSR"), num_frames=7)) == 70
    # DAIN after Upscale doubles the frames of every window
    assert default_chunk_frames(pipeline.EnhanceSettings(process_order=("PPMSVSR", "DAIN"), num_frames=10)) == 200


def test_job_folder_is_hidden_beside_the_output(tmp_path):
    assert job_folder(tmp_path / "film.mkv") == tmp_path / ".film.mkv.vsmsvsr-job"


@pytest.mark.parametrize("kwargs, message", [
    (dict(chunk_frames=-1), "chunk_frames must be an int >= 0"),
    (dict(verify=1.5), "verify must be an int >= 0"),
    (dict(resume=True, restart=True), "give resume or restart, not both"),
    (dict(ray=""), "ray must be 'local' or a cluster address"),
    (dict(ray="local", chunk_frames=0), r"ray runs chunks: chunk_frames 0 \(one pass\) cannot be spread"),
    (dict(ray_cpus=-1), "ray_cpus must be a number >= 0"),
])
def test_bad_chunk_options_are_refused(kwargs, message):
    with pytest.raises(pipeline.EnhanceError, match=r"vsmsvsr\.enhance: " + message):
        ChunkOptions(**kwargs)


def test_frame_hasher_hashes_the_pixels_of_every_frame():
    """The hashes taken from the y4m stream on its way to the encoder are those of the frames."""
    clip = city_clip(frames=3)
    chunks = []
    sink = type("Sink", (), {"write": lambda self, b: chunks.append(bytes(b)), "flush": lambda self: None})()
    hasher = FrameHasher(sink, frame_bytes(clip))
    clip.output(hasher, y4m=True)
    assert hasher.hashes == [frame_hash(f) for f in clip.frames()]
    assert len(set(hasher.hashes)) == 3 and b"".join(chunks).startswith(b"YUV4MPEG2")


# --------------------------------------------------------------------------------------------
# whole jobs


def test_chunked_output_is_the_single_pass_output(clip24, weights, tmp_path):
    one, chunked = tmp_path / "one.mkv", tmp_path / "chunked.mkv"
    proc = _cli(*_ppmsvsr(clip24, one, weights, "--chunk_frames", "0", "--max_frames", "15"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "chunk(s)" not in proc.stderr
    proc = _cli(*_ppmsvsr(clip24, chunked, weights, "--chunk_frames", "6", "--verify", "4", "--max_frames", "15"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 chunk(s) of up to 6 frames" in proc.stderr
    assert "--verify: frames 0, 5, 6, 11 recomputed here match" in proc.stderr
    _same_file_content(one, chunked)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunked.mkv", "one.mkv"]  # the job folder is gone


def test_a_job_of_one_chunk_is_one_pass(clip24, weights, tmp_path):
    out = tmp_path / "short.mkv"
    proc = _cli(*_ppmsvsr(clip24, out, weights, "--max_frames", "4", "--preset", "ultrafast"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "chunk(s)" not in proc.stderr and int(streams(out, "video")[0]["nb_read_frames"]) == 4


def _count_windows(monkeypatch) -> list[int]:
    from vsmsvsr.engine import runner

    calls: list[int] = []
    original = runner.Engine.__call__

    def counted(self, frames, *args, **kwargs):
        calls.append(len(frames))
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(runner.Engine, "__call__", counted)
    return calls


def test_killed_job_resumes_without_recomputing_finished_chunks(clip24, weights, tmp_path, monkeypatch):
    out = tmp_path / "film.mkv"
    folder = job_folder(out)
    args = _ppmsvsr(clip24, out, weights, "--chunk_frames", "4")
    proc = subprocess.Popen([sys.executable, "-m", "vsmsvsr", "enhance", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    manifest = folder / "manifest.json"
    deadline = time.monotonic() + 600
    done: dict = {}
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists():
            done = json.loads(manifest.read_text())["chunks"]
            if done:
                break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the job ended before it could be killed"
    assert done and not out.exists()
    finished = set(json.loads(manifest.read_text())["chunks"])
    assert 1 <= len(finished) < 6

    # Different settings are refused, naming the change; the unfinished job stays.
    changed = _cli(*[a for a in args if a != "--lossless"], "--crf", "20")
    assert changed.returncode == 2
    assert "started with other settings (crf: None -> 20.0; lossless: True -> False)" in changed.stderr
    assert json.loads(manifest.read_text())["chunks"].keys() == finished

    # Re-run in this process, counting the model's windows: only the unfinished chunks' are computed.
    calls = _count_windows(monkeypatch)
    settings = pipeline.EnhanceSettings(process_order=("PPMSVSR",), num_frames=2, device="cpu",
                                        weights={"PPMSVSR": weights})
    encode_settings = pipeline.EncodeSettings(lossless=True)
    pipeline.enhance(clip24, out, settings, encode_settings, progress=False, chunks=ChunkOptions(chunk_frames=4))
    assert calls and len(calls) == 2 * (6 - len(finished))  # 2 windows of 2 frames per chunk of 4
    assert not folder.exists()

    single = tmp_path / "single.mkv"
    calls.clear()
    pipeline.enhance(clip24, single, settings, encode_settings, progress=False, chunks=ChunkOptions(chunk_frames=0))
    assert len(calls) == 12
    _same_file_content(single, out)


def test_a_damaged_segment_is_rendered_again_and_resume_needs_a_job(clip24, weights, tmp_path, monkeypatch, caplog):
    out = tmp_path / "film.mkv"
    settings = pipeline.EnhanceSettings(process_order=("PPMSVSR",), num_frames=2, device="cpu", max_frames=8,
                                        weights={"PPMSVSR": weights})
    encode_settings = pipeline.EncodeSettings(lossless=True)
    with pytest.raises(pipeline.EnhanceError, match="--resume: there is no job to resume"):
        pipeline.enhance(clip24, out, settings, encode_settings, progress=False,
                         chunks=ChunkOptions(chunk_frames=4, resume=True))

    # Stop the job after its first chunk (as a crash would), then damage that chunk's segment.
    real_finish = chunks_mod.Manifest.finish

    def finish_then_crash(self, chunk, hashes):
        real_finish(self, chunk, hashes)
        raise KeyboardInterrupt

    monkeypatch.setattr(chunks_mod.Manifest, "finish", finish_then_crash)
    with pytest.raises(KeyboardInterrupt):
        pipeline.enhance(clip24, out, settings, encode_settings, progress=False, chunks=ChunkOptions(chunk_frames=4))
    monkeypatch.setattr(chunks_mod.Manifest, "finish", real_finish)
    segment = job_folder(out) / "chunk-00000.mkv"
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))

    calls = _count_windows(monkeypatch)
    pipeline.enhance(clip24, out, settings, encode_settings, progress=False,
                     chunks=ChunkOptions(chunk_frames=4, resume=True))
    assert len(calls) == 4  # both chunks: the damaged one again
    assert "chunk 0 (frames 0-3): its segment is missing or does not match the manifest" in caplog.text
    single = tmp_path / "single.mkv"
    pipeline.enhance(clip24, single, settings, encode_settings, progress=False, chunks=ChunkOptions(chunk_frames=0))
    _same_file_content(single, out)


def test_restart_discards_an_unfinished_job(clip24, weights, tmp_path):
    out = tmp_path / "film.mkv"
    folder = job_folder(out)
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"version": 1, "digest": "other", "record": {"crf": "1"},
                                                      "chunks": {}}))
    proc = _cli(*_ppmsvsr(clip24, out, weights, "--chunk_frames", "4", "--max_frames", "8"))
    assert proc.returncode == 2 and "add --restart to discard it" in proc.stderr
    proc = _cli(*_ppmsvsr(clip24, out, weights, "--chunk_frames", "4", "--max_frames", "8", "--restart"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--restart: removing the job folder" in proc.stderr
    assert not folder.exists() and int(streams(out, "video")[0]["nb_read_frames"]) == 8


def test_chain_with_scene_cuts_across_chunks_is_the_single_pass(media, weights, tmp_path):
    """DAIN -> DeOldify -> PPMSVSR on 8 frames (16 out) with scene cuts at output frames 6 (on the
    boundary of chunks of 3) and 10 (inside chunk 9-11, beside the boundary at 9); chunks of 3 also
    cut Upscale's windows of 5, so windows are computed in two chunks: chunked lossless output
    decodes to the single pass's frames."""
    import paddle

    from tests.keyed import model_weights

    city = city_clip(frames=8)
    other = core.std.CropAbs(core.std.FlipHorizontal(city_clip(frames=8, size=128)), 64, 64, 8, 40)
    third = core.std.Invert(city)
    gray = core.std.Splice([city[:3], other[3:5], third[5:8]])
    src = write_video(media / "cuts.mkv", gray)
    dain = media / "dain_random.pdparams"
    if not dain.exists():
        random_weights("DAIN", dain)
    deoldify = media / "deoldify_artistic_keyed.pdparams"
    paddle.save({k: paddle.to_tensor(v) for k, v in model_weights("deoldify_artistic").items()}, str(deoldify))
    common = ["--input", str(src), "--process_order", "DAIN", "DeOldify", "PPMSVSR", "--artistic",
              "--render_factor", "7", "--num_frames", "5", "--DAIN_weight", str(dain), "--DeOldify_weight",
              str(deoldify), "--PPMSVSR_weight", str(weights), "--cpu", "--lossless", "-q"]
    one, chunked = tmp_path / "one.mkv", tmp_path / "chunked.mkv"
    proc = _cli(*common, "-o", str(one), "--chunk_frames", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _cli(*common, "-o", str(chunked), "--chunk_frames", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "6 chunk(s) of up to 3 frames" in proc.stderr
    _same_file_content(one, chunked)
    (video,) = streams(one, "video")
    assert int(video["nb_read_frames"]) == 16 and (video["width"], video["height"]) == (256, 256)


def test_sigterm_stops_a_chunked_job_cleanly_keeping_finished_chunks(clip24, weights, tmp_path):
    out = tmp_path / "film.mkv"
    out.write_bytes(b"an older film")
    folder = job_folder(out)
    proc = subprocess.Popen([sys.executable, "-m", "vsmsvsr", "enhance",
                             *_ppmsvsr(clip24, out, weights, "--chunk_frames", "4")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT,
                                                                                             signal.SIGTERM)])
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        manifest = folder / "manifest.json"
        if manifest.exists() and json.loads(manifest.read_text())["chunks"]:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "chunk(s) are done and kept in" in err and "interrupted by SIGTERM" in err
    assert out.read_bytes() == b"an older film"
    names = sorted(p.name for p in folder.iterdir())
    done = json.loads((folder / "manifest.json").read_text())["chunks"]
    assert names == sorted(["manifest.json", *(f"chunk-{int(i):05d}.mkv" for i in done)])  # nothing half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name, "film.mkv"]


def test_verify_refuses_to_write_an_output_whose_frames_differ(clip24, weights, tmp_path, monkeypatch):
    """--verify recomputes frames here; a frame that another machine computed differently (as a
    node with another Paddle would) stops the job before the output is written."""
    import importlib

    encode_mod = importlib.import_module("vsmsvsr.pipeline.encode")  # the package's `encode` is the function
    out = tmp_path / "film.mkv"
    settings = pipeline.EnhanceSettings(process_order=("PPMSVSR",), num_frames=2, device="cpu", max_frames=8,
                                        weights={"PPMSVSR": weights})
    monkeypatch.setattr(encode_mod, "frame_hash", lambda frame: "0" * 64)
    with pytest.raises(pipeline.EnhanceError, match=r"--verify: frame\(s\) 0, 3, 4 recomputed here differ"):
        pipeline.enhance(clip24, out, settings, pipeline.EncodeSettings(lossless=True), progress=False,
                         chunks=ChunkOptions(chunk_frames=4, verify=3))
    assert not out.exists() and (job_folder(out) / "manifest.json").exists()


def test_chunked_hevc_in_mp4_is_the_single_pass(media, weights, tmp_path):
    """The ffmpeg encoders write the segments themselves (libx265 here) and the join writes MP4."""
    src = write_video(media / "city128.mkv", city_clip(frames=12, size=128))
    args = ["--input", str(src), "--process_order", "PPMSVSR", "--PPMSVSR_weight", str(weights), "--num_frames", "2",
            "--cpu", "--lossless", "-q", "--encoder", "x265", "--preset", "ultrafast"]
    one, chunked = tmp_path / "one.mp4", tmp_path / "chunked.mp4"
    proc = _cli(*args, "--chunk_frames", "0", "-o", str(one))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _cli(*args, "--chunk_frames", "4", "-o", str(chunked))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 chunk(s) of up to 4 frames" in proc.stderr
    _same_file_content(one, chunked)
    (video,) = streams(chunked, "video")
    assert video["codec_name"] == "hevc" and Fraction(video["avg_frame_rate"]) == FPS


def test_one_process_at_a_time_works_on_a_job(clip24, weights, tmp_path):
    import fcntl

    out = tmp_path / "film.mkv"
    settings = pipeline.EnhanceSettings(process_order=("PPMSVSR",), num_frames=2, device="cpu",
                                        weights={"PPMSVSR": weights})
    lock_path = tmp_path / ".film.mkv.vsmsvsr-job.lock"
    with open(lock_path, "w") as held:  # as another running job holds it
        held.write("4242")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(pipeline.EnhanceError, match=r"another vsmsvsr-enhance \(pid 4242\) is working on this "
                                                        r"output's job"):
            pipeline.enhance(clip24, out, settings, pipeline.EncodeSettings(lossless=True), progress=False,
                             chunks=ChunkOptions(chunk_frames=4))
    assert not out.exists() and not job_folder(out).exists()


def test_segments_with_b_frames_join_on_the_exact_frame_times(clip24, weights, tmp_path):
    """The default x264 settings use B-frames: the segments must be Matroska with timestamps (the
    x264 program picks its container by the file name), and the joined file has every frame at
    its time."""
    from tests.media import assert_frame_times

    out = tmp_path / "film.mkv"
    proc = _cli("--input", str(clip24), "-o", str(out), "--process_order", "PPMSVSR", "--PPMSVSR_weight", str(weights),
                "--num_frames", "2", "--cpu", "-q", "--max_frames", "12", "--chunk_frames", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 chunk(s) of up to 4 frames" in proc.stderr
    assert_frame_times(out, 12, FPS)
    (video,) = streams(out, "video")
    assert Fraction(video["avg_frame_rate"]) == FPS and int(video["has_b_frames"]) > 0
