"""Child process of test_upscale_memory: upscale N frames, print peak RSS in KiB.

Runs a tiny configuration of the MSVSR architecture (same code path as PP-MSVSR, fewer channels)
so that thousands of frames take seconds; memory behaviour is the filter's, not the model's.
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
)


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
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
