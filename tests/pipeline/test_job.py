"""vsmsvsr-enhance: flags, encoding (frames, exact rate, audio, colour tags), failures, end to end."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs

from tests.media import (FPS, assert_frame_times, assert_same_frames, audio_duration, audio_md5, city_clip, decode,
                         msvsr_weights, random_weights, streams, write_video)
from vsmsvsr import pipeline
from vsmsvsr.cli import enhance_main

core = vs.core
FRAME = float(1 / FPS)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def with_audio(media) -> Path:
    """6 frames, 64x64, 24000/1001 fps, FFV1 + FLAC sine."""
    return write_video(media / "city.mkv", city_clip())


@pytest.fixture(scope="module")
def for_encoders(media) -> Path:
    """6 frames, 128x128 (x265 3.5 is not lossless on a 64x64 picture with B-frames), with audio."""
    return write_video(media / "city128.mkv", city_clip(size=128))


@pytest.fixture(scope="module")
def without_audio(media) -> Path:
    return write_video(media / "silent.mkv", city_clip(), audio=False)


@pytest.fixture(scope="module")
def ppmsvsr_weights(media) -> Path:
    return msvsr_weights(media / "ppmsvsr_keyed.pdparams")


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vsmsvsr", "enhance", *args], capture_output=True,
                          text=True, timeout=timeout)


# --------------------------------------------------------------------------------------------
# encoding, without a model


@pytest.mark.parametrize("encoder, name", [("x264", "out.mkv"), ("x265", "out.mkv"), ("ffmpeg", "out.mkv"),
                                           ("ffmpeg", "out.mp4"), ("x265", "out.mp4")])
def test_encode_keeps_frames_exact_rate_audio_and_tags(for_encoders, tmp_path, encoder, name):
    src = pipeline.open_source(for_encoders)
    out = pipeline.encode(src, tmp_path / name, pipeline.EncodeSettings(encoder=encoder, lossless=True),
                         audio_from=for_encoders, progress=False)
    assert _listing(tmp_path) == [name]
    (video,) = streams(out, "video")
    assert video["codec_name"] == ("hevc" if encoder == "x265" else "h264")
    assert int(video["nb_read_frames"]) == 6
    assert Fraction(video["r_frame_rate"]) == FPS and Fraction(video["avg_frame_rate"]) == FPS
    assert_frame_times(out, 6, FPS)
    # Untagged 64x64 YUV: written as what players assume for SD, which the filters used too.
    assert (video["color_range"], video["color_space"]) == ("tv", "smpte170m")
    (audio,) = streams(out, "audio")
    assert audio["codec_name"] == "flac"
    assert audio_md5(out) == audio_md5(for_encoders)
    assert abs(audio_duration(out) - audio_duration(for_encoders)) < FRAME
    assert_same_frames(decode(out), decode(for_encoders))


def test_input_without_audio_gives_video_only(without_audio, tmp_path):
    out = pipeline.encode(pipeline.open_source(without_audio), tmp_path / "out.mp4",
                         pipeline.EncodeSettings(encoder="ffmpeg", preset="ultrafast"), audio_from=without_audio,
                         progress=False)
    assert [s["codec_type"] for s in streams(out, "video") + streams(out, "audio")] == ["video"]
    (video,) = streams(out, "video")
    assert int(video["nb_read_frames"]) == 6
    assert Fraction(video["r_frame_rate"]) == FPS and Fraction(video["avg_frame_rate"]) == FPS


@pytest.mark.parametrize("encoder", ["x264", "ffmpeg"])
def test_colour_tags_of_the_clip_reach_the_bitstream(with_audio, tmp_path, encoder):
    clip = core.std.SetFrameProps(pipeline.open_source(with_audio), _Matrix=1, _Primaries=1, _Transfer=1,
                                  _Range=int(vs.RANGE_FULL))
    out = pipeline.encode(clip, tmp_path / "out.mkv", pipeline.EncodeSettings(encoder=encoder, preset="ultrafast"),
                         progress=False)
    (video,) = streams(out, "video")
    assert (video["color_range"], video["color_space"], video["color_primaries"], video["color_transfer"]) == (
        "pc", "bt709", "bt709", "bt709")


def test_rgb_and_float_results_are_delivered_in_the_sources_yuv(with_audio):
    src = pipeline.open_source(with_audio)
    rgb = core.resize.Bicubic(src, format=vs.RGBS)  # resize reads the explicit _Matrix
    out = pipeline.delivery_clip(rgb, src, "x264")
    assert out.format.id == vs.YUV420P8
    props = out.get_frame(0).props
    assert (props["_Matrix"], props["_Range"]) == (6, int(vs.RANGE_LIMITED))
    y_out = np.asarray(out.get_frame(3)[0], dtype=int)
    y_src = np.asarray(src.get_frame(3)[0], dtype=int)
    assert np.abs(y_out - y_src).max() <= 1
    # 16-bit integer YUV is dithered down to what the encoder takes.
    deep = pipeline.delivery_clip(core.resize.Point(src, format=vs.YUV420P16), src, "x264")
    assert deep.format.id == vs.YUV420P10


def test_encoder_error_leaves_no_file_and_keeps_the_old_output(with_audio, tmp_path):
    out = tmp_path / "out.mkv"
    out.write_bytes(b"previous result")
    settings = pipeline.EncodeSettings(encoder_args=("--tune", "nonsense"))
    with pytest.raises(pipeline.EncodeError, match=r"x264 failed \(exit \d+\): .*nonsense"):
        pipeline.encode(pipeline.open_source(with_audio), out, settings, audio_from=with_audio, progress=False)
    assert _listing(tmp_path) == ["out.mkv"] and out.read_bytes() == b"previous result"


def test_audio_that_does_not_fit_the_container_is_an_error_naming_it(for_encoders, tmp_path):
    pcm = tmp_path / "pcm.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(for_encoders), "-c:v", "copy", "-c:a", "pcm_s16le", str(pcm)],
                   check=True)
    with pytest.raises(pipeline.EncodeError, match=r"ffmpeg \(libx264\) failed .*pcm_s16le.*write \.mkv"):
        pipeline.encode(pipeline.open_source(pcm), tmp_path / "out.mp4", pipeline.EncodeSettings(encoder="ffmpeg"),
                       audio_from=pcm, progress=False)
    assert _listing(tmp_path) == ["pcm.mkv"]


def test_encoder_dying_mid_stream_leaves_nothing(with_audio, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "x264"
    fake.write_text("#!/bin/sh\nhead -c 5000 >/dev/null\necho 'x264 [error]: disk full' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    clip = city_clip(frames=40)
    with pytest.raises(pipeline.EncodeError, match=r"x264 failed \(exit 3\): x264 \[error\]: disk full"):
        pipeline.encode(clip, tmp_path / "new" / "out.mkv", audio_from=with_audio, progress=False)
    assert _listing(tmp_path) == ["bin"]  # no output, no temporary file, no folder made for it


def test_ctrl_c_leaves_nothing(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        import vapoursynth as vs
        from vsmsvsr import pipeline
        core = vs.core
        clip = core.std.BlankClip(width=64, height=64, format=vs.YUV420P8, length=2000)
        def slow(n, f):
            time.sleep(0.01)
            return f
        pipeline.encode(core.std.ModifyFrame(clip, clip, slow), sys.argv[1], progress=False)
    """)
    folder = tmp_path / "out"
    # SIGINT's default disposition in the child: under `nohup ... &` it would inherit SIG_IGN.
    proc = subprocess.Popen([sys.executable, "-c", script, str(folder / "result.mkv")], stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not any(".video.mkv" in name for name in _listing(folder)):  # the encoder is running
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in proc.stderr.read().decode()
    assert not folder.exists()  # made by encode, removed with its temporary files


# --------------------------------------------------------------------------------------------
# flags


@pytest.mark.parametrize("flags, message", [
    (["--process_order", "RealSR"], "unknown process_order name 'RealSR' .a PaddleGAN model that vsmsvsr does not port"),
    (["--process_order", "ppmsvsr"], "did you mean 'PPMSVSR'"),
    (["--process_order", "DAIN", "--time_step", "2"], "time_step must be > 0 and < 1"),
    (["--process_order", "DAIN", "--time_step", "half"], "time_step must be a number"),
    (["--process_order", "PPMSVSR", "--num_frames", "0"], "num_frames must be >= 1, got 0"),
    (["--process_order", "PPMSVSR", "DeOldify", "--render_factor", "80"], "render_factor must be between 7 and 64"),
    (["--process_order", "DeepRemaster", "--mindim", "8"], "mindim must be >= 16, got 8"),
    (["--process_order", "PPMSVSR", "--PPMSVSR_weight", "/nonexistent.pdparams"],
     "--PPMSVSR_weight: no file at '/nonexistent.pdparams'"),
    (["--process_order", "PPMSVSR", "-o", "out.avi"], r"must end in one of \.mkv, \.mp4, \.mov"),
    (["--process_order", "PPMSVSR", "-o", "out.mp4"], "x264 program writes Matroska"),
    (["--process_order", "PPMSVSR", "--crf", "60"], "crf must be between 0 and 51"),
    (["--process_order", "DeepRemaster", "--reference_dir", "/nonexistent"], "reference_dir '/nonexistent' is not a folder"),
    (["--process_order", "PPMSVSR", "--max_memory", "lots"], "max_memory must be bytes, a size such as '8GB'"),
    (["--process_order", "PPMSVSR", "--max_memory", "0%"], r"max_memory as a share must be > 0% and <= 100%"),
])
def test_invalid_flags_are_one_line_errors(with_audio, tmp_path, caplog, flags, message):
    code = enhance_main(["--input", str(with_audio), "--output", str(tmp_path / "out"), *flags])
    assert code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert re.search(message, errors[0]), errors[0]
    assert not (tmp_path / "out").exists()


def test_the_steps_share_the_jobs_budget():
    from vsmsvsr.engine.memory import PROCESS_BASE

    clip = vs.core.std.BlankClip(format=vs.YUV420P8, width=320, height=180, length=30)
    settings = pipeline.EnhanceSettings(process_order=("DAIN", "DeOldify", "PPMSVSR"), max_memory="20GB")
    budgets = pipeline.step_budgets(clip, settings)
    share = 20 * 10**9 - pipeline.JOB_FRAME_CACHE_MB * 2**20  # 1280x720 float frames: 8 fit in 512 MB
    assert vs.core.max_cache_size == pipeline.JOB_FRAME_CACHE_MB
    # 1280x720 -> 5120x2880: 8 float RGB frames are 1.4 GB
    assert pipeline.job_frame_cache_mb(1280, 720, settings) == -(-8 * 12 * 5120 * 2880 // 2**20)
    assert budgets[:2] == [share, share]
    dain = msvsr_plan(clip, "DAIN", max_memory=share).estimate - PROCESS_BASE
    deoldify = msvsr_plan(clip, "DeOldify", max_memory=share).estimate - PROCESS_BASE
    assert budgets[2] == share - dain - deoldify
    # a budget the other models already fill is refused, naming what takes it
    with pytest.raises(pipeline.EnhanceError, match=r"^vsmsvsr\.enhance: max_memory 3\.0 GB \(max_memory\) leaves "
                                                    r"nothing for Upscale: .* DAIN .*, DeOldify .*; give more"):
        pipeline.step_budgets(clip, pipeline.EnhanceSettings(process_order=("DAIN", "DeOldify", "PPMSVSR"),
                                                             max_memory="3GB"))
    # alone, Upscale has the whole share; two Upscales split it
    assert pipeline.step_budgets(clip, pipeline.EnhanceSettings(process_order=("PPMSVSR",), max_memory="20GB")) == [share]
    twice = pipeline.EnhanceSettings(process_order=("PPMSVSR", "PPMSVSR"), max_memory="20GB")
    rest = 20 * 10**9 - pipeline.job_frame_cache_mb(320, 180, twice) * 2**20  # 5120x2880 at the end
    assert pipeline.step_budgets(clip, twice) == [rest // 2, rest // 2]


def test_a_job_budget_too_small_stops_before_any_frame(with_audio, ppmsvsr_weights, tmp_path, caplog):
    out = tmp_path / "out.mkv"
    args = ["--input", str(with_audio), "-o", str(out), "--process_order", "PPMSVSR",
            "--PPMSVSR_weight", str(ppmsvsr_weights), "-q", "--max_memory"]
    code = enhance_main([*args, "10MB"])
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith("vsmsvsr.enhance: max_memory 10 MB leaves nothing for the models"), errors[0]
    caplog.clear()
    code = enhance_main([*args, "1.2GB"])  # more than the frame cache, less than Upscale needs
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert code == 1 and len(errors) == 1
    assert errors[0].startswith("vsmsvsr.Upscale: max_memory") and "is too small for PP-MSVSR" in errors[0]
    assert not out.exists() and _listing(tmp_path) == []


def msvsr_plan(*args, **kwargs):
    import vsmsvsr

    return vsmsvsr.plan(*args, **kwargs)


def test_flags_are_checked_before_anything_is_loaded(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from vsmsvsr.cli import enhance_main
        rc = enhance_main(["--input", {str(tmp_path / 'missing.mkv')!r}, "--process_order", "PPMSVSR"])
        sys.stderr.write(f"rc={{rc}} paddle={{'paddle' in sys.modules}} vs={{'vapoursynth' in sys.modules}}\\n")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "is not a file" in proc.stderr
    assert "rc=2 paddle=False vs=False" in proc.stderr
    assert proc.stdout == "" and _listing(tmp_path) == []


def test_unreachable_official_weights_name_the_url_and_exit_1(with_audio, tmp_path, monkeypatch, caplog):
    from vsmsvsr import weights

    monkeypatch.setenv("VSMSVSR_HOME", str(tmp_path / "cache"))
    url = "http://127.0.0.1:9/models/PP-MSVSR_reds_x4.pdparams"  # discard port: connection refused
    monkeypatch.setitem(weights.OFFICIAL, "PP-MSVSR", weights.WeightFile("PP-MSVSR", url))
    code = enhance_main(["--input", str(with_audio), "--output", str(tmp_path / "out"),
                         "--process_order", "PPMSVSR", "-q"])
    assert code == 1
    (error,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert url in error and str(weights.cached_path("PP-MSVSR")) in error and "place it at" in error
    assert "--PPMSVSR_weight PATH" in error
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# end to end, with models


def test_ppmsvsr_end_to_end(with_audio, ppmsvsr_weights, tmp_path):
    from vsmsvsr.filters import Upscale

    proc = _run_cli("--input", str(with_audio), "--output", str(tmp_path), "--process_order", "PPMSVSR",
                    "--PPMSVSR_weight", str(ppmsvsr_weights), "--cpu", "--lossless")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == ""  # nothing on stdout
    assert "6/6" in proc.stderr and "frame/s" in proc.stderr  # the progress bar
    assert "Warning:" not in proc.stderr  # Paddle's start-up and export noise is filtered
    out = tmp_path / "city_PPMSVSR.mkv"
    assert _listing(tmp_path) == [out.name]
    (video,) = streams(out, "video")
    assert (video["width"], video["height"], int(video["nb_read_frames"])) == (256, 256, 6)
    assert Fraction(video["r_frame_rate"]) == FPS and Fraction(video["avg_frame_rate"]) == FPS
    assert_frame_times(out, 6, FPS)
    assert audio_md5(out) == audio_md5(with_audio)
    assert abs(audio_duration(out) - audio_duration(with_audio)) < FRAME
    # The file holds exactly the filter's frames (lossless encoding).
    reference = Upscale(pipeline.open_source(with_audio), weights=str(ppmsvsr_weights), window=10, device="cpu")
    assert_same_frames(decode(out), reference)


def test_max_frames_cuts_video_and_audio(with_audio, ppmsvsr_weights, tmp_path):
    out = tmp_path / "first3.mkv"
    proc = _run_cli("--input", str(with_audio), "-o", str(out), "--process_order", "PPMSVSR", "--max_frames", "3",
                    "--PPMSVSR_weight", str(ppmsvsr_weights), "--cpu", "--preset", "ultrafast", "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (video,) = streams(out, "video")
    assert int(video["nb_read_frames"]) == 3
    # -c copy cuts the audio at a packet boundary (FLAC: 4096 samples, 85 ms) at or after 3 frames.
    assert 3 * FRAME - 1e-3 <= audio_duration(out) <= 3 * FRAME + 4096 / 48000 < audio_duration(with_audio)


@pytest.mark.parametrize("name", ["doubled.mkv", "doubled.mp4"])
def test_dain_doubles_the_frame_count_at_the_exact_rate(with_audio, media, tmp_path, name):
    dain = media / "dain_random.pdparams"
    if not dain.exists():
        random_weights("DAIN", dain)
    out = tmp_path / name
    proc = _run_cli("--input", str(with_audio), "-o", str(out), "--process_order", "DAIN", "--time_step", "0.5",
                    "--DAIN_weight", str(dain), "--cpu", "--encoder", "ffmpeg", "--preset", "ultrafast")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (video,) = streams(out, "video")
    assert int(video["nb_read_frames"]) == 12
    assert_frame_times(out, 12, 2 * FPS)
    if out.suffix == ".mp4":  # Matroska's millisecond timestamps make ffprobe guess 7001/146
        assert Fraction(video["r_frame_rate"]) == 2 * FPS and Fraction(video["avg_frame_rate"]) == 2 * FPS
    assert audio_md5(out) == audio_md5(with_audio)
    assert abs(audio_duration(out) - audio_duration(with_audio)) < FRAME / 2


def test_steps_chain_in_the_given_order(with_audio, ppmsvsr_weights, media, tmp_path):
    dain = media / "dain_random.pdparams"
    if not dain.exists():
        random_weights("DAIN", dain)
    proc = _run_cli("--input", str(with_audio), "--output", str(tmp_path), "--process_order", "DAIN", "PPMSVSR",
                    "--max_frames", "3", "--DAIN_weight", str(dain), "--PPMSVSR_weight", str(ppmsvsr_weights),
                    "--cpu", "--preset", "ultrafast", "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "city_DAIN_PPMSVSR.mkv"
    assert _listing(tmp_path) == [out.name]
    (video,) = streams(out, "video")
    assert (video["width"], video["height"], int(video["nb_read_frames"])) == (256, 256, 6)
    assert_frame_times(out, 6, 2 * FPS)


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("vsmsvsr-enhance")
    assert script.is_file(), "vsmsvsr-enhance is missing: reinstall the package (bash scripts/setup.sh)"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--process_order" in proc.stdout and "--PPMSVSRLarge_weight" in proc.stdout
