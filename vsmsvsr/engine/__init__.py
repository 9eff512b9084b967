"""Run a loaded model on one temporal window of frames: ``Engine(model)(frames) -> frames x4``.

    from vsmsvsr.engine import Engine, Backend
    engine = Engine("PP-MSVSR")                                # backend="auto"
    hr = engine(frames)          # (t, 3, h, w) float32 RGB in [0, 1] -> (t, 3, 4h, 4w) float32

One call runs one window (all t frames together, batch 1). The output is the model's raw output,
not clipped to [0, 1].

Backends (``backend=`` a name or one of the :class:`Backend` configurations):

===========  =========================================  ======================================
name         configuration                              what runs
===========  =========================================  ======================================
dygraph      ``Backend.Dygraph()``                      the Paddle layer itself, eager mode
cpu          ``Backend.PaddleInferenceCPU()``           Paddle Inference on the CPU, oneDNN
cpu-plain    ``Backend.PaddleInferenceCPU(onednn=       Paddle Inference on the CPU, Paddle's
             False)``                                   own CPU kernels
gpu          ``Backend.PaddleInferenceGPU()``           Paddle Inference on a CUDA GPU
trt          ``Backend.PaddleInferenceGPU(              Paddle Inference with TensorRT
             tensorrt=True)``                           subgraphs
auto         first available of trt, gpu, cpu, dygraph
===========  =========================================  ======================================

Modules: ``backends`` (configurations, availability, the choice), ``runner`` (:class:`Engine`,
:class:`LayerRunner`: fallback, program store), ``dygraph``, ``paddle_inference``, ``segmented``
(one module per way of running a model), ``programs`` (the on-disk program store and its cache
policy), ``tiling``.

Availability is probed when an :class:`Engine` is built, never at import. An explicitly chosen
backend that is not available raises ``ValueError`` naming the backend and the reason; only
``"auto"`` picks another one (and says so in the log).

Static programs. The Paddle Inference backends run programs exported with ``paddle.jit.save``,
once per model (architecture source + weights digest), input shape and Paddle version, and cached
on disk: ``<cache>/static/`` where ``<cache>`` is :func:`vsmsvsr.weights.cache_dir`
(``$VSMSVSR_HOME`` or the user cache dir) unless ``cache_dir`` is given. Every program is written
to a temporary folder and renamed into place, so a crash or a concurrent writer never leaves a
half-written program behind. Paddle 3.x writes ``model.json`` (PIR), Paddle 2.6 ``model.pdmodel``.

Whole network or segments. On the GPU the whole network is one static program. On the CPU the
default is *segmented*: the network's own Python ``forward`` runs eagerly and calls small static
programs instead of its layers:

* every parameterised child layer (SPyNet, the feature extractor, each offset head, each
  residual trunk...) is one program; containers (LayerDict/LayerList) and layers holding a
  deformable convolution are looked into instead;
* MSVSR's two per-frame x4 stages (``auxiliary_stage``, ``upsample``) are one program per frame
  each, so that their 4x-resolution LeakyReLUs, concatenations and additions stay inside Paddle
  Inference and no 4x tensor is copied between eager mode and a predictor. Frames taller than
  ``STRIP_PIXELS / width`` rows go through them in horizontal strips with ``STRIP_HALO`` rows of
  context on each side, cropped away afterwards: the stages are convolutions of bounded reach,
  so the result is the same (rounding-level), and their memory no longer grows with the frame
  (at 720x404 they held ~5 GB whole);
* deformable convolutions stay eager and run as slices of their deformable groups on ``threads``
  worker threads: Paddle's CPU kernel samples its columns on one thread (~0.2 s per call at
  180x320), its eager kernels release the GIL, and the groups are independent, so the slices sum
  to the same convolution (rounding-level differences). 1.9x on this op with 2 threads.

Why not one program: with oneDNN, Paddle caches a reordered copy of the input of every
convolution op *instance* for the lifetime of the predictor. A whole-network program of a
10-frame window unrolls thousands of convolutions; PP-MSVSR at 10 x 180x320 then holds 16.5 GB
(measured; 4.9 GB segmented, 3.4 GB PaddleGAN's dygraph). A segment is called once per frame with
the same shapes, so its caches are reused: memory no longer grows with the program, and the
segments are shared by windows of any length. Batched calls (SPyNet on all frame pairs, the
feature extractor on all frames) are split into single samples, which is exact because every
segment treats batch items independently. ``segmented=False`` exports the whole network as one
program instead (fine without oneDNN or for short windows).

Paddle Inference passes. With oneDNN on Paddle 3.x (PIR) two passes are deleted:
``conv_activation_onednn_fuse_pass`` (crashes with a segmentation fault on conv + LeakyReLU in
Paddle 3.3) and ``onednn_placement_pass`` (places ``bilinear_interp`` on oneDNN, whose attributes
the executor cannot convert: ``NotImplementedError ... ArrayAttribute<DoubleAttribute>``). All
remaining fusions keep the output within the spec tolerance of dygraph (rel_l2 <= 1e-5,
max_abs <= 1e-4 * max(1, max|g|)); ``tests/engine/test_engine.py`` checks every CPU backend.

Threads: ``threads`` sets the math-library threads of the Paddle Inference predictors (default:
the CPUs this process may use) and, for the dygraph backend, Paddle's process-wide math threads
(default: left as they are, i.e. what ``FLAGS_paddle_num_threads`` says, 1 unless changed).
"""
from __future__ import annotations

from vsmsvsr.engine.backends import (BACKEND_NAMES, Backend, BackendChoice, BackendConfig, BackendLike,
                                     available_backends, choose_backend)
from vsmsvsr.engine.paddle_inference import ProgramRunner
from vsmsvsr.engine.runner import MIN_SIZE, Engine, LayerRunner
from vsmsvsr.engine.segmented import strip_rows
from vsmsvsr.engine.tiling import run_window

__all__ = ["Backend", "BackendChoice", "BackendConfig", "BackendLike", "Engine", "LayerRunner", "ProgramRunner",
           "choose_backend", "available_backends", "BACKEND_NAMES", "MIN_SIZE", "run_window", "strip_rows"]
