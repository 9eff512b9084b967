"""Child process of test_upscale_memory: upscale N frames, print peak RSS in KiB.

``N WEIGHTS``: a tiny configuration of the MSVSR architecture (same code path as PP-MSVSR, fewer
channels) so that thousands of frames take seconds; memory behaviour is the filter's, not the
model's. ``N --plumbing WIDTHxHEIGHT``: Upscale's whole graph at a 720p-class size with the model
replaced by a stand-in that returns a window of the right size (the buffers a real window
leaves behind: outputs, cache, conversions at 4x), so that the windows' memory is released or not
exactly as with a model, in seconds per hundred frames.
"""
import resource
import sys
from types import MappingProxyType

import paddle
import vapoursynth as vs

import vsmsvsr.models as models
from tests.footage import CITY, source
from vsmsvsr.filters.upscale import Upscale

TINY = models.ModelSpec(
    "TINY-MSVSR", "vsr", "vsmsvsr.models.msvsr:MSVSR",
    dict(mid_channels=8, num_init_blocks=1, num_blocks=1, num_reconstruction_blocks=1, deform_groups=1),
    weights="PP-MSVSR", container={"generator": ""},
    memory=models.MODEL_SPECS["PP-MSVSR"].memory,  # generous for a tiny model: whole frames still fit
)


def peak_rss_kib() -> int:
    """This process image's peak RSS in KiB (``VmHWM``: ``ru_maxrss`` would carry the parent's
    peak across ``exec``, see tests/memory_probe.py)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class _StandInEngine:
    """What Upscale needs of an Engine: ``engine(frames) -> (t, 3, 4h, 4w)`` float32."""

    def __init__(self, *args, **kwargs) -> None:
        self.backend = None

    def __call__(self, frames):
        import numpy as np

        t, c, h, w = frames.shape
        out = np.empty((t, c, 4 * h, 4 * w), np.float32)
        out[...] = frames.mean()  # touch every page, as a real result does
        return out


def plumbing(frames: int, width: int, height: int) -> None:
    import vsmsvsr.engine as engine

    engine.Engine = _StandInEngine
    core = vs.core
    # the frame cache vsmsvsr-enhance would set for this job
    from vsmsvsr.pipeline import EnhanceSettings, job_frame_cache_mb

    core.max_cache_size = job_frame_cache_mb(width, height, EnhanceSettings(process_order=("PPMSVSR",)))
    shot = core.resize.Bicubic(source(CITY)[:100], width, height)
    clip = core.std.Splice([shot] * (frames // 100 + 1))[:frames]
    out = Upscale(clip, tile=0, scene_change=False)
    done = sum(1 for _ in out.frames())
    assert done == frames
    print(peak_rss_kib())


def main(frames: int, weights: str) -> None:
    models.MODEL_SPECS = MappingProxyType({**models.MODEL_SPECS, TINY.name: TINY})
    paddle.seed(0)
    paddle.save({"generator": models.build_model(TINY.name).state_dict()}, weights)
    core = vs.core
    # VapourSynth's own frame cache may use up to max_cache_size (12 GB on this machine by default)
    # whatever the filters do; a fixed, smaller budget keeps that out of the comparison.
    core.max_cache_size = 1024
    shot = core.std.CropAbs(source(CITY), width=64, height=64, left=320, top=160)[:100]
    clip = core.std.Splice([shot] * (frames // 100 + 1))[:frames]
    # window 20 / overlap 1: the same plumbing as the defaults (10 / 4) with 1.7x fewer context
    # frames to compute, which keeps this test at a few minutes; the bound is per window either way.
    out = Upscale(clip, model=TINY.name, weights=weights, window=20, overlap=1)
    done = sum(1 for _ in out.frames())
    assert done == frames
    print(peak_rss_kib())


if __name__ == "__main__":
    if sys.argv[2] == "--plumbing":
        plumbing(int(sys.argv[1]), *map(int, sys.argv[3].split("x")))
    else:
        main(int(sys.argv[1]), sys.argv[2])
