"""``vsmsvsr-enhance``: PaddleGAN's video-enhance pipeline as one VapourSynth graph piped into an encoder.

PaddleGAN's ``applications/tools/video-enhance.py`` runs its models one after another, each
writing every frame to PNG files and re-encoding a video for the next. Here the models of
``--process_order`` are chained as filters in one graph — source → filters → delivery format —
and the frames go once, as YUV4MPEG, into the encoder's stdin::

    source (BestSource, else L-SMASH-Works) → Upscale / Interpolate / Colorize / Remaster
        → integer YUV/GRAY → y4m → x264 → temporary .mkv → ffmpeg: + the input's audio, copied
                                 → ffmpeg (libx264 / libx265, + the input's audio, copied)
        → output file (.mkv; .mp4/.mov with the ffmpeg encoders)

The graph is built and output in this process (not by ``vspipe``): argument checks, weight
downloads and errors of the graph happen before the encoder starts and come back as Python
exceptions with one clear message, and the progress bar sees every frame.

Nothing is written under the output's name until the result is complete: the encoder writes to a
hidden temporary file beside it, which is renamed over the output at the very end. A failure or
Ctrl-C removes every temporary file.
"""
from __future__ import annotations

from vsmsvsr.pipeline.chunks import ChunkOptions, chunk_table, default_chunk_frames, job_folder
from vsmsvsr.pipeline.encode import (CONTAINERS, DEFAULT_CRF, ENCODERS, MAX_BITS, PRESETS, EncodeSettings, VideoTags,
                                     encode)
from vsmsvsr.pipeline.errors import FUNC, EncodeError, EnhanceError
from vsmsvsr.pipeline.job import default_output_path, enhance
from vsmsvsr.pipeline.source import delivery_clip, open_source
from vsmsvsr.pipeline.steps import (JOB_CACHED_FRAMES, JOB_FRAME_CACHE_MB, STEPS, EnhanceSettings, Step,
                                    apply_steps, job_frame_cache_mb, resolve_weights,
                                    step_budgets)

__all__ = ["STEPS", "ENCODERS", "PRESETS", "CONTAINERS", "DEFAULT_CRF", "MAX_BITS", "FUNC", "Step", "EnhanceError",
           "EncodeError", "EnhanceSettings", "EncodeSettings", "VideoTags", "enhance", "default_output_path",
           "resolve_weights", "open_source", "apply_steps", "delivery_clip", "encode", "step_budgets",
           "JOB_FRAME_CACHE_MB", "JOB_CACHED_FRAMES", "job_frame_cache_mb", "ChunkOptions", "chunk_table",
           "default_chunk_frames", "job_folder"]
