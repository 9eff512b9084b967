"""DAIN frame interpolation as PaddleGAN ships it: PWC-DC-Net flow + backward warping + a residual
rectification net. Runs on CPU and GPU with standard Paddle ops only.

Port of PaddleGAN's ``applications/DAIN`` (Apache-2.0): ``networks/dain_slowmotion.py`` (the
network its demo and exported program are built from), ``pwcnet/pwcnet.py`` and
``resblock/basicblock.py``. It is *not* the full DAIN of Bao et al. (CVPR 2019): PaddleGAN's
network has no MegaDepth depth hourglass, no context extractor, no adaptive-filter (kernel)
estimation and no depth-aware flow projection. Its rectification net takes 13 channels
(``3 + 3 + 3 + 2 + 2``: blended frame, both warped frames, both flows). What it does, for a pair
of frames and a time ``t``:

1. Optical flow, both directions: PWC-DC-Net on ``(frame0, frame1)`` and on ``(frame1, frame0)``,
   at 1/4 resolution. ``20 *`` that (PWC-Net's ``div_flow``) is the flow in input pixels.
2. Flows for time ``t``: forward flow ``* t``, backward flow ``* (1 - t)``, each bilinearly
   upsampled x4 (``align_corners=True``, values not rescaled).
3. Backward warping (bilinear, zero padding, ``align_corners=True``): ``ref0 = warp(frame0,
   t * flow01)``, ``ref1 = warp(frame1, (1 - t) * flow10)``; blend ``(ref0 + ref1) / 2``.
4. Rectification ResNet on ``concat(blend, ref0, ref1, flow_t0, flow_t1)``, added to the blend.

Note on step 3, kept as PaddleGAN has it: the warp samples ``frame0`` at ``x + t * flow01(x)``.
Original DAIN first projects the flow to time ``t`` (which negates it); PaddleGAN's simplified
network skips the projection, so the warped frames move content the other way than a textbook
interpolation would. The rectification net was trained by PaddleGAN on exactly this input.

Sub-layer names follow PaddleGAN (``flownets.conv1a`` ... ``flownets.dc_conv7``,
``rectifyNet.block1`` ... ``rectifyNet.block5``), so a PaddleGAN dygraph state dict would load
as it is. The official weights are a static inference program instead; see
:mod:`vsmsvsr.models.dain_weights` for how its parameters are mapped onto these keys.

Input contract of :class:`DAIN`: two RGB frames ``(B, 3, H, W)`` float32 in ``[0, 1]``
(PaddleGAN: ``imageio.imread`` RGB ``/ 255``, no normalisation), ``H`` and ``W`` multiples of 64
(six stride-2 levels in PWC-Net). The output is *not* clipped; PaddleGAN's predictor clips it
to ``[0, 1]`` before ``* 255`` and rounding. PaddleGAN's predictor pads (``np.pad`` mode
``'edge'``, centred) each side to the next multiple of 128, or by 32 on both sides when the size
already is a multiple of 128, and crops the result back.

The official program (``DAIN_weight.tar``, run by ``ppgan/apps/dain_predictor.py``)
-----------------------------------------------------------------------------------
The tar holds one folder (the predictor is handed the extracted folder, presumably
``DAIN_weight/``) with a legacy ``ProgramDesc`` file whose name contains ``model`` and a
``save_combine`` parameter file whose name contains ``param`` (PaddleGAN's own
``applications/DAIN/predict.py`` opens them as ``model`` and ``params``). The file itself could not
be inspected here; what follows is how ``applications/DAIN/demo.py`` builds the program and how the
predictor feeds it (check with :func:`vsmsvsr.models.dain_weights.program_info`):

* feed: one variable ``image``, float32, shape ``(2, 1, 3, H, W)`` (``H``, ``W`` free, multiples
  of 64): ``image[0]`` = frame 0, ``image[1]`` = frame 1, each ``(1, 3, H, W)`` RGB in
  ``[0, 1]`` after the padding above. Batch is 1.
* fetch: one variable, float32, ``(T, 1, 3, H, W)``: the rectified frames (``out[0][1]`` of
  ``DAIN_slowmotion``) for ``t_k = k * time_step``, ``k = 1 .. T``, ``T = int(1 / time_step) - 1``,
  where ``time_step`` is the value baked in when the program was exported (the backward flows
  are scaled by the same list reversed, ``(T + 1 - k) * time_step = 1 - t_k``). The predictor
  zips these outputs with its own ``time_step`` list, so the two must agree;
  :func:`vsmsvsr.models.dain_weights.program_info` reports the feeds, fetches and the time
  offsets found in the program. Values are unclipped; the predictor clips to ``[0, 1]``.

This module's :class:`DAIN` computes the same thing for any ``t`` in ``(0, 1)``.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

__all__ = ["DAIN", "TimedDAIN", "DAINAdapter", "ADAPTER", "paddlegan_padding", "PWCDCNet", "RectifyNet", "BasicBlock", "correlation", "backward_warp", "SIZE_MULTIPLE"]

#: Frame height and width must be multiples of this (PWC-Net: six stride-2 levels).
SIZE_MULTIPLE = 64

_WHO = "vsmsvsr.models.dain.DAIN"


def _leaky(x: paddle.Tensor) -> paddle.Tensor:
    return F.leaky_relu(x, 0.1)


# --------------------------------------------------------------------------------------------
# standard-op replacements of PaddleGAN's custom ops


def correlation(x1: paddle.Tensor, x2: paddle.Tensor, max_displacement: int = 4) -> paddle.Tensor:
    """FlowNet/PWC-Net cost volume: ``(B, C, H, W)`` x2 -> ``(B, (2d+1)^2, H, W)``.

    Same semantics as PaddleGAN's ``correlation`` op with ``kernel_size=1``, ``stride1 = stride2 = 1``,
    ``pad_size = max_displacement = d``: channel ``(dy + d) * (2d + 1) + (dx + d)`` holds
    ``sum_c x1[c, y, x] * x2[c, y + dy, x + dx] / C``, with ``x2`` zero outside the image.
    """
    d = max_displacement
    height, width = x1.shape[2], x1.shape[3]
    channels = x1.shape[1]
    x2 = F.pad(x2, [d, d, d, d])
    costs = []
    for dy in range(2 * d + 1):
        for dx in range(2 * d + 1):
            shifted = x2[:, :, dy:dy + height, dx:dx + width]
            costs.append(paddle.sum(x1 * shifted, axis=1))
    # the CUDA op sums over channels (kernel 1x1), then divides by kernel_size^2 * C
    return paddle.stack(costs, axis=1) / float(channels)


def _sampling_grid(flow: paddle.Tensor) -> paddle.Tensor:
    """Pixel grid plus ``flow`` (B, 2, H, W), normalised for ``grid_sample``: (B, H, W, 2)."""
    height, width = flow.shape[2], flow.shape[3]
    # The pixel grid is built from the flow tensor itself (cumulative sums of ones are exact
    # integers), so it follows the input's device and traces into a static graph.
    ones = paddle.ones_like(flow[:, 0])
    grid_x = paddle.cumsum(ones, axis=2) - 1.0
    grid_y = paddle.cumsum(ones, axis=1) - 1.0
    # PaddleGAN's arithmetic, in its order: 2 * (grid + flow) / (size - 1) - 1
    x = 2.0 * (grid_x + flow[:, 0]) / (width - 1.0) - 1.0
    y = 2.0 * (grid_y + flow[:, 1]) / (height - 1.0) - 1.0
    return paddle.stack([x, y], axis=3)


def backward_warp(x: paddle.Tensor, flow: paddle.Tensor) -> paddle.Tensor:
    """``x`` (B, C, H, W) sampled at ``pixel + flow`` (B, 2, H, W; channel 0 = x, in pixels).

    Bilinear, zero outside, ``align_corners=True`` (fluid's ``grid_sampler``):
    PaddleGAN's ``PWCDCNet.warp_nomask``.
    """
    return F.grid_sample(x, _sampling_grid(flow), mode="bilinear", padding_mode="zeros", align_corners=True)


def _masked_backward_warp(x: paddle.Tensor, flow: paddle.Tensor) -> paddle.Tensor:
    """:func:`backward_warp`, zeroed where the sample leaves the image: ``PWCDCNet.warp``.

    The mask is a warped field of ones, kept where it is at least 0.999 (a sample touching
    outside pixels gets less). PaddleGAN warps a ones tensor with ``x``'s channel count; every
    channel of it is the same, so one channel is warped here and broadcast.
    """
    grid = _sampling_grid(flow)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    ones = paddle.ones_like(x[:, :1])
    coverage = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    mask = paddle.cast(coverage >= 0.999, x.dtype)
    return warped * mask


# --------------------------------------------------------------------------------------------
# PWC-DC-Net (pwcnet/pwcnet.py)

# Encoder: per level, (attribute names of the three convs, output channels); the first conv of
# each level has stride 2. Level 6 names its convs conv6aa, conv6a, conv6b (PaddleGAN's order).
_ENCODER = (
    (("conv1a", "conv1aa", "conv1b"), 16),
    (("conv2a", "conv2aa", "conv2b"), 32),
    (("conv3a", "conv3aa", "conv3b"), 64),
    (("conv4a", "conv4aa", "conv4b"), 96),
    (("conv5a", "conv5aa", "conv5b"), 128),
    (("conv6aa", "conv6a", "conv6b"), 196),
)
# Decoder: each level has five densely connected convs, their output channels:
_DENSE = (128, 128, 96, 64, 32)
# Context network after level 2: (output channels, dilation)
_CONTEXT = ((128, 1), (128, 2), (128, 4), (96, 8), (64, 16), (32, 1), (2, 1))


class PWCDCNet(nn.Layer):
    """PWC-Net with DenseNet decoders and a dilated context network (``pwc_dc_net``).

    ``forward(frame0, frame1)``: two ``(B, 3, H, W)`` images, ``H`` and ``W`` multiples of 64
    -> flow ``(B, 2, H/4, W/4)`` from ``frame0`` to ``frame1`` in units of 20 input pixels
    (``frame1`` sampled at ``x + 20 * flow(x)`` matches ``frame0`` at ``x``).
    """

    def __init__(self, max_displacement: int = 4) -> None:
        super().__init__()
        self.md = max_displacement
        in_channels = 3
        for names, channels in _ENCODER:
            for i, name in enumerate(names):
                conv = nn.Conv2D(in_channels if i == 0 else channels, channels, 3, 2 if i == 0 else 1, 1)
                self.add_sublayer(name, conv)
            in_channels = channels

        cost_channels = (2 * max_displacement + 1) ** 2
        for level in (6, 5, 4, 3, 2):
            encoder_channels = _ENCODER[level - 1][1]
            # level 6 starts from the cost volume alone; finer levels add the encoder features,
            # the upsampled flow and the 2 upsampled decoder features
            channels = cost_channels if level == 6 else cost_channels + encoder_channels + 4
            for i, out_channels in enumerate(_DENSE):
                self.add_sublayer(f"conv{level}_{i}", nn.Conv2D(channels, out_channels, 3, 1, 1))
                channels += out_channels
            self.add_sublayer(f"predict_flow{level}", nn.Conv2D(channels, 2, 3, 1, 1))
            if level > 2:
                self.add_sublayer(f"deconv{level}", nn.Conv2DTranspose(2, 2, 4, 2, 1))
                self.add_sublayer(f"upfeat{level}", nn.Conv2DTranspose(channels, 2, 4, 2, 1))

        for i, (out_channels, dilation) in enumerate(_CONTEXT, start=1):
            self.add_sublayer(f"dc_conv{i}", nn.Conv2D(channels, out_channels, 3, 1, dilation, dilation=dilation))
            channels = out_channels

    def _pyramid(self, image: paddle.Tensor) -> list[paddle.Tensor]:
        """Encoder features of levels 1..6 (index 0..5): 1/2 .. 1/64 resolution."""
        features = []
        x = image
        for names, _ in _ENCODER:
            for name in names:
                x = _leaky(getattr(self, name)(x))
            features.append(x)
        return features

    def forward(self, frame0: paddle.Tensor, frame1: paddle.Tensor) -> paddle.Tensor:
        features0 = self._pyramid(frame0)
        features1 = self._pyramid(frame1)

        up_flow = up_feat = flow = x = None
        for level in (6, 5, 4, 3, 2):
            f0, f1 = features0[level - 1], features1[level - 1]
            if level == 6:
                x = _leaky(correlation(f0, f1, self.md))
            else:
                # frame1's features warped towards frame0 with the coarser flow, in this level's
                # pixels: 20 (div_flow) / 2^level
                warped = _masked_backward_warp(f1, up_flow * (20.0 / 2 ** level))
                cost = _leaky(correlation(f0, warped, self.md))
                x = paddle.concat([cost, f0, up_flow, up_feat], axis=1)
            # dense decoder: each conv's output is prepended to its input
            for i in range(len(_DENSE)):
                x = paddle.concat([_leaky(getattr(self, f"conv{level}_{i}")(x)), x], axis=1)
            flow = getattr(self, f"predict_flow{level}")(x)
            if level > 2:
                up_flow = getattr(self, f"deconv{level}")(flow)
                up_feat = getattr(self, f"upfeat{level}")(x)

        # context network refines the level-2 flow (no activation after the last conv)
        for i in range(1, len(_CONTEXT)):
            x = _leaky(getattr(self, f"dc_conv{i}")(x))
        return flow + getattr(self, f"dc_conv{len(_CONTEXT)}")(x)


# --------------------------------------------------------------------------------------------
# rectification net (resblock/basicblock.py: MultipleBasicBlock_4)


class BasicBlock(nn.Layer):
    """conv3x3 -> ReLU -> conv3x3 (no biases, no batch norm), plus the input, -> ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2D(channels, channels, 3, 1, 1, bias_attr=False)
        self.conv2 = nn.Conv2D(channels, channels, 3, 1, 1, bias_attr=False)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + x)


class RectifyNet(nn.Layer):
    """7x7 conv + ReLU, three :class:`BasicBlock`, 3x3 conv to a 3-channel residual image."""

    def __init__(self, in_channels: int = 13, channels: int = 64) -> None:
        super().__init__()
        self.block1 = nn.Conv2D(in_channels, channels, 7, 1, 3)
        self.block2 = BasicBlock(channels)
        self.block3 = BasicBlock(channels)
        self.block4 = BasicBlock(channels)
        self.block5 = nn.Conv2D(channels, 3, 3, 1, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = F.relu(self.block1(x))
        x = self.block4(self.block3(self.block2(x)))
        return self.block5(x)


# --------------------------------------------------------------------------------------------
# DAIN (networks/dain_slowmotion.py)


def _check_times(times: Sequence[float]) -> tuple[float, ...]:
    out = []
    for t in times:
        if isinstance(t, bool) or not isinstance(t, numbers.Real):
            raise TypeError(f"{_WHO}: t must be a float in (0, 1), got {type(t).__name__}")
        if not 0.0 < float(t) < 1.0:
            raise ValueError(f"{_WHO}: t must be in (0, 1) (0 and 1 are the input frames), got {t!r}")
        out.append(float(t))
    if not out:
        raise ValueError(f"{_WHO}: no time given")
    return tuple(out)


def _check_frames(frame0: paddle.Tensor, frame1: paddle.Tensor) -> None:
    shape0, shape1 = list(frame0.shape), list(frame1.shape)
    if len(shape0) != 4 or shape0[1] != 3:
        raise ValueError(f"{_WHO}: frames must be (B, 3, H, W) RGB, got shape {tuple(shape0)}")
    if shape0 != shape1:
        raise ValueError(f"{_WHO}: both frames must have the same shape, got {tuple(shape0)} and {tuple(shape1)}")
    height, width = shape0[2], shape0[3]
    if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise ValueError(
            f"{_WHO}: frame height and width must be multiples of {SIZE_MULTIPLE}, got {height}x{width} "
            "(pad the frames, e.g. with edge replication as PaddleGAN does, and crop the result)"
        )


class DAIN(nn.Layer):
    """PaddleGAN's DAIN (``DAIN_slowmotion``, eval mode): frame interpolation at any ``t`` in (0, 1).

    ``forward(frame0, frame1, t=0.5)``: frames ``(B, 3, H, W)`` float32 RGB in ``[0, 1]``, ``H`` and
    ``W`` multiples of :data:`SIZE_MULTIPLE` (64) -> the frame at time ``t`` (``(B, 3, H, W)``,
    unclipped). :meth:`interpolate` gives several times from one flow estimation.
    """

    def __init__(self) -> None:
        super().__init__()
        self.flownets = PWCDCNet()
        self.rectifyNet = RectifyNet(3 + 3 + 3 + 2 + 2, 64)
        self.div_flow = 20.0

    def _flow_at(self, flow: paddle.Tensor, time: float) -> paddle.Tensor:
        # PaddleGAN scales by div_flow, then by the time offset, then upsamples x4 (in that order)
        flow = flow * self.div_flow
        flow = flow * time
        size = [flow.shape[2] * 4, flow.shape[3] * 4]
        return F.interpolate(flow, size=size, mode="bilinear", align_corners=True)

    def interpolate(self, frame0: paddle.Tensor, frame1: paddle.Tensor, times: Sequence[float]) -> list[paddle.Tensor]:
        """Frames at each of ``times`` (each in (0, 1)), as a list of ``(B, 3, H, W)`` tensors.

        The two PWC-Net passes run once; only warping and rectification run per time.
        """
        times = _check_times(times)
        _check_frames(frame0, frame1)

        # stage 1: optical flow both ways, 1/4 resolution
        flow01 = self.flownets(frame0, frame1)
        flow10 = self.flownets(frame1, frame0)

        outputs = []
        for t in times:
            # stage 2: flows scaled to time t, full resolution
            flow_t0 = self._flow_at(flow01, t)
            flow_t1 = self._flow_at(flow10, 1.0 - t)
            # stage 3: warp both frames and blend
            ref0 = backward_warp(frame0, flow_t0)
            ref1 = backward_warp(frame1, flow_t1)
            blend = (ref0 + ref1) / 2.0
            # stage 4: residual rectification
            features = paddle.concat([blend, ref0, ref1, flow_t0, flow_t1], axis=1)
            outputs.append(self.rectifyNet(features) + blend)
        return outputs

    def forward(self, frame0: paddle.Tensor, frame1: paddle.Tensor, t: float = 0.5) -> paddle.Tensor:
        return self.interpolate(frame0, frame1, (t,))[0]


class TimedDAIN(nn.Layer):
    """:class:`DAIN` with the times as a tensor input, for one static program per frame pair.

    ``forward(frame0, frame1, times)``: frames ``(1, 3, H, W)`` as for :class:`DAIN`, ``times``
    ``(T,)`` float32 in (0, 1) -> ``(T, 3, H, W)``, the frames at those times. Same arithmetic,
    in the same order, as :meth:`DAIN.interpolate` (the times batched), so a time given as
    float32 gives the same frame either way. The times are not checked here (a static program
    cannot); the caller keeps them in (0, 1).
    """

    def __init__(self, dain: DAIN) -> None:
        super().__init__()
        self.dain = dain

    def forward(self, frame0: paddle.Tensor, frame1: paddle.Tensor, times: paddle.Tensor) -> paddle.Tensor:
        dain = self.dain
        t = times.reshape([-1, 1, 1, 1])
        count = times.shape[0]
        # stage 1: optical flow both ways, once for every time
        flow01 = dain.flownets(frame0, frame1) * dain.div_flow
        flow10 = dain.flownets(frame1, frame0) * dain.div_flow
        # stage 2: flows scaled to each time (batch = times), full resolution
        size = [flow01.shape[2] * 4, flow01.shape[3] * 4]
        flow_t0 = F.interpolate(flow01 * t, size=size, mode="bilinear", align_corners=True)
        flow_t1 = F.interpolate(flow10 * (1.0 - t), size=size, mode="bilinear", align_corners=True)
        # stage 3: warp both frames and blend
        ref0 = backward_warp(frame0.tile([count, 1, 1, 1]), flow_t0)
        ref1 = backward_warp(frame1.tile([count, 1, 1, 1]), flow_t1)
        blend = (ref0 + ref1) / 2.0
        # stage 4: residual rectification
        features = paddle.concat([blend, ref0, ref1, flow_t0, flow_t1], axis=1)
        return dain.rectifyNet(features) + blend


def paddlegan_padding(size: int) -> tuple[int, int]:
    """(before, after) padding of one side of length ``size``, as PaddleGAN's predictor pads it:
    centred up to the next multiple of 128, or 32 on each side when already a multiple."""
    if size % 128 == 0:
        return 32, 32
    padded = (size // 128 + 1) * 128
    before = (padded - size) // 2
    return before, padded - size - before


class DAINAdapter:
    """numpy in and out, as PaddleGAN's predictor feeds DAIN: frames padded (edge) to its sizes,
    the times as an input of :class:`TimedDAIN` (one program per frame size), output cropped back."""

    @staticmethod
    def layer(net: DAIN) -> "TimedDAIN":
        """What the engine runs: ``(frame0, frame1, times) -> (T, 3, H, W)``."""
        return TimedDAIN(net)

    @staticmethod
    def network_size(width: int, height: int) -> tuple[int, int]:
        """``(height, width)`` the network sees for frames of ``width`` x ``height`` (padded)."""
        return height + sum(paddlegan_padding(height)), width + sum(paddlegan_padding(width))

    @staticmethod
    def prepare(frame0: np.ndarray, frame1: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
        """``(3, h, w)`` RGB frames -> padded ``(1, 3, H, W)`` each, and the box ``(top, left, h, w)``."""
        h, w = frame0.shape[1:]
        (top, bottom), (left, right) = paddlegan_padding(h), paddlegan_padding(w)
        pad = ((0, 0), (0, 0), (top, bottom), (left, right))
        return (np.pad(frame0[None], pad, mode="edge"), np.pad(frame1[None], pad, mode="edge"), (top, left, h, w))

    @staticmethod
    def finish(out: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """``(T, 3, H, W)`` -> the box, clipped to [0, 1]: ``(T, 3, h, w)``."""
        top, left, h, w = box
        return np.clip(out[:, :, top:top + h, left:left + w], 0.0, 1.0)


ADAPTER = DAINAdapter()
