"""DeepRemaster (Iizuka & Simo-Serra, 2019): film restoration and reference-based colorization.

Port of ``ppgan/models/generators/remaster.py`` (PaddleGAN, Apache-2.0). Two independent 3-D
convolutional networks, weight-compatible with PaddleGAN's ``deep_remaster.pdparams``
(``{'modelR': state_dict_R, 'modelC': state_dict_C}``):

* :class:`NetworkR` (restoration): grey frames (L channel of Lab, scaled to [0, 1]) ->
  restored grey frames. A residual 3-D conv encoder/decoder over (time, height, width).
* :class:`NetworkC` (colorization): restored L -> ab chroma. A 3-D U-Net whose bottleneck
  attends to features of optional colour reference images (source-reference attention) and
  to itself (self-attention), both over all frames of the window at once.
* :class:`DeepRemaster`: both, as ``.restoration`` and ``.colorization``; its state dict keys are
  ``restoration.<R key>`` and ``colorization.<C key>``.

Sub-layer names, registration order and shapes follow PaddleGAN exactly (the parameter-free
replicate pads are children ``layers.0`` / ``down1.0``, so the first convs are ``layers.1`` /
``down1.1``), so the official state dicts load with strict key and shape checks.

Tensor layout is NCDHW throughout: (batch, channels, frames T, height H, width W), float32.

Deviations from PaddleGAN, none of which changes an output beyond float32 rounding:

* Upsampling uses ``scale_factor=(1, 2, 2)`` instead of a size computed from ``x.shape`` (same
  sampling positions for exact doubling; keeps the graph free of shape arithmetic for export).
* Attention products use ``matmul`` with transpose flags instead of explicit transposes (saves a
  copy of the (N_source, N_ref) attention matrix) and do not return the attention matrix. The
  different summation order moves NetworkC's outputs by about 1e-7 relative to PaddleGAN's
  (explicit transposes are bit-identical); NetworkR is bit-identical.
* In dygraph, input shapes are validated (channel count, H/W multiples) with a ``ValueError``
  instead of failing deep inside a concat or broadcast.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from vsmsvsr.models.blocks import shape_of

__all__ = ["DeepRemaster", "NetworkR", "NetworkC", "SourceReferenceAttention", "RemasterAdapter", "ADAPTER",
           "processing_size"]

#: Mean grey level subtracted from the L input of both networks (training-set statistic).
L_OFFSET = 0.4462414
#: Offset subtracted from the RGB reference images of :class:`NetworkC`.
REF_OFFSET = 0.48

_Triple = Sequence[int]


# --------------------------------------------------------------------------------------------
# building blocks


class TempConv(nn.Layer):
    """Conv3D -> BatchNorm (eps 1e-5) -> ELU(1). PaddleGAN's default kernel (1, 3, 3) mixes no frames."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: _Triple = (1, 3, 3),
                 stride: _Triple = (1, 1, 1), padding: _Triple = (0, 1, 1)) -> None:
        super().__init__()
        self.conv3d = nn.Conv3D(in_planes, out_planes, kernel_size, stride=stride, padding=padding)
        self.bn = nn.BatchNorm3D(out_planes, epsilon=1e-5, data_format="NCDHW")

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.elu(self.bn(self.conv3d(x)), alpha=1.0)


def _upsample_hw(x: paddle.Tensor) -> paddle.Tensor:
    """Trilinear resize (T, H, W) -> (T, 2H, 2W), half-pixel centres (align_corners=False)."""
    return F.interpolate(x, scale_factor=[1.0, 2.0, 2.0], mode="trilinear", align_corners=False,
                         align_mode=0, data_format="NCDHW")


class Upsample(nn.Layer):
    """x2 spatial trilinear upsampling, then Conv3D 3x3x3 -> BatchNorm -> ELU."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.conv3d = nn.Conv3D(in_planes, out_planes, (3, 3, 3), stride=(1, 1, 1), padding=(1, 1, 1))
        self.bn = nn.BatchNorm3D(out_planes, epsilon=1e-5, data_format="NCDHW")

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.elu(self.bn(self.conv3d(_upsample_hw(x))), alpha=1.0)


class UpsampleConcat(nn.Layer):
    """x2 spatial trilinear upsampling of ``x``, concat with the skip feature, 3x3x3 TempConv."""

    def __init__(self, in_planes_up: int, in_planes_skip: int, out_planes: int) -> None:
        super().__init__()
        self.conv3d = TempConv(in_planes_up + in_planes_skip, out_planes, kernel_size=(3, 3, 3),
                               padding=(1, 1, 1))

    def forward(self, x: paddle.Tensor, skip: paddle.Tensor) -> paddle.Tensor:
        return self.conv3d(paddle.concat([_upsample_hw(x), skip], axis=1))


class SourceReferenceAttention(nn.Layer):
    """Non-local attention of every source position over every reference position.

    ``source`` (B, Cs, Ts, Hs, Ws) and ``reference`` (B, Cr, Tr, Hr, Wr), Cs == Cr; all frames
    and pixels are flattened into one axis: N_source = Ts*Hs*Ws, N_ref = Tr*Hr*Wr. The energy and
    attention matrices are (B, N_source, N_ref) float32, softmax over the reference axis. Returns
    ``gamma * (value(reference) @ attention^T) + source``, shaped like ``source``. Used as
    self-attention with ``reference = source``.
    """

    def __init__(self, in_planes_s: int, in_planes_r: int) -> None:
        super().__init__()
        self.query_conv = nn.Conv3D(in_planes_s, in_planes_s // 8, kernel_size=1)
        self.key_conv = nn.Conv3D(in_planes_r, in_planes_r // 8, kernel_size=1)
        self.value_conv = nn.Conv3D(in_planes_r, in_planes_r, kernel_size=1)
        # Residual scale, zero at initialisation (the layer starts as the identity).
        self.gamma = self.create_parameter(shape=[1], dtype="float32",
                                           default_initializer=nn.initializer.Constant(0.0))

    def forward(self, source: paddle.Tensor, reference: paddle.Tensor) -> paddle.Tensor:
        query = paddle.flatten(self.query_conv(source), start_axis=2)      # (B, C/8, Ns)
        key = paddle.flatten(self.key_conv(reference), start_axis=2)       # (B, C/8, Nr)
        value = paddle.flatten(self.value_conv(reference), start_axis=2)   # (B, C, Nr)
        energy = paddle.matmul(query, key, transpose_x=True)               # (B, Ns, Nr)
        attention = F.softmax(energy, axis=-1)
        out = paddle.matmul(value, attention, transpose_y=True)            # (B, C, Ns)
        out = paddle.reshape(out, shape_of(source))
        return self.gamma * out + source


def _check_frames(x: paddle.Tensor, multiple: int, who: str) -> None:
    """Refuse anything but (B, 1, T, H, W) with H and W multiples of ``multiple``.

    Dygraph only: while tracing a static graph the shape may be symbolic.
    """
    if not paddle.in_dynamic_mode():
        return
    if len(x.shape) != 5 or x.shape[1] != 1:
        raise ValueError(f"{who}: frames must be (B, 1, T, H, W) grey levels, got shape {list(x.shape)}")
    if x.shape[3] % multiple or x.shape[4] % multiple:
        raise ValueError(f"{who}: frame height and width must be multiples of {multiple}, "
                         f"got {x.shape[3]}x{x.shape[4]} (H x W)")


# --------------------------------------------------------------------------------------------
# restoration


class NetworkR(nn.Layer):
    """Restoration network (PaddleGAN's ``NetworkR``, 9,881,857 parameters).

    ``forward(frames)``: ``frames`` (B, 1, T, H, W) grey levels in [0, 1], H and W multiples of 4,
    any T >= 1 -> restored frames, same shape, clipped to [0, 1]. All 13 convs are 3x3x3, so each
    output frame sees up to 13 frames on either side (the first conv replicate-pads T, the others
    zero-pad).

    Internals: features at 1/2 (64-128 channels) and 1/4 (256 channels) resolution. The network
    predicts a residual: ``clip(x + tanh(net(x - 0.4462414)), 0, 1)``.
    """

    def __init__(self) -> None:
        super().__init__()
        k3 = (3, 3, 3)
        p1 = (1, 1, 1)
        self.layers = nn.Sequential(
            nn.Pad3D((1, 1, 1, 1, 1, 1), mode="replicate", data_format="NCDHW"),  # W, H and T
            TempConv(1, 64, k3, stride=(1, 2, 2), padding=(0, 0, 0)),              # 1/2
            TempConv(64, 128, k3, padding=p1),
            TempConv(128, 128, k3, padding=p1),
            TempConv(128, 256, k3, stride=(1, 2, 2), padding=p1),                  # 1/4
            TempConv(256, 256, k3, padding=p1),
            TempConv(256, 256, k3, padding=p1),
            TempConv(256, 256, k3, padding=p1),
            TempConv(256, 256, k3, padding=p1),
            Upsample(256, 128),                                                    # 1/2
            TempConv(128, 64, k3, padding=p1),
            TempConv(64, 64, k3, padding=p1),
            Upsample(64, 16),                                                      # 1/1
            nn.Conv3D(16, 1, k3, stride=(1, 1, 1), padding=p1),
        )

    def forward(self, frames: paddle.Tensor) -> paddle.Tensor:
        _check_frames(frames, 4, "vsmsvsr.models.remaster.NetworkR")
        # Residual in [-1, 1] on top of the (centred) input, result kept in the valid range.
        residual = F.tanh(self.layers(frames - L_OFFSET))
        return paddle.clip(frames + residual, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# colorization


class NetworkC(nn.Layer):
    """Reference-based colorization network (PaddleGAN's ``NetworkC``, 54,303,374 parameters).

    ``forward(frames, refs=None)``:

    * ``frames`` (B, 1, T, H, W): restored grey levels in [0, 1] (the output of :class:`NetworkR`),
      H and W multiples of 16, any T >= 1.
    * ``refs`` (B, Nref, 3, Hr, Wr): colour reference images, RGB in [0, 1], any Nref >= 1, any
      Hr, Wr (the predictor uses a 256 short side); or ``None`` for colorization without
      references, which skips both source-reference attention layers.
    * returns ab (B, 2, T, H, W) in (0, 1): Lab chroma, a = 255*ab[:, 0] - 128, b likewise.

    Memory. Every attention matrix (energy and its softmax, float32, one per batch item) is
    quadratic in the number of positions it relates, counted over **all T frames together**.
    With N8 = T*(H/8)*(W/8), N16 = T*(H/16)*(W/16), R8 = Nref*ceil(Hr/8)*ceil(Wr/8) and
    R16 = Nref*ceil(Hr/16)*ceil(Wr/16):

    ============  ==============  ===============================
    layer         resolution      attention matrix
    ============  ==============  ===============================
    ``stattn1``   1/8             (B, N8, R8)    (refs only)
    ``stattn2``   1/16            (B, N16, R16)  (refs only)
    ``selfattn1`` 1/16            (B, N16, N16)
    ``selfattn2`` 1/8             (B, N8, N8)    the largest
    ============  ==============  ===============================

    ``selfattn2`` dominates: (T*H*W/64)**2 * 4 bytes per matrix, and the energy and the softmax
    exist at the same time. T=5 at 368x640 gives N8 = 18,400, 1.35 GB per matrix; doubling T or
    the pixel count quadruples it. Frames of one window interact only through these attentions
    and the 3x3x3 convs of the decoder.
    """

    def __init__(self) -> None:
        super().__init__()
        s2 = (1, 2, 2)
        k3 = (3, 3, 3)
        p1 = (1, 1, 1)
        # Registration order = state_dict order = PaddleGAN's.
        self.down1 = nn.Sequential(
            nn.Pad3D((1, 1, 1, 1, 0, 0), mode="replicate", data_format="NCDHW"),  # W and H, not T
            TempConv(1, 64, stride=s2, padding=(0, 0, 0)),                      # 1/2
            TempConv(64, 128),
            TempConv(128, 128),
            TempConv(128, 256, stride=s2),                                      # 1/4
            TempConv(256, 256),
            TempConv(256, 256),
            TempConv(256, 512, stride=s2),                                      # 1/8
            TempConv(512, 512),
            TempConv(512, 512),
        )
        self.flat = nn.Sequential(TempConv(512, 512), TempConv(512, 512))
        self.down2 = nn.Sequential(TempConv(512, 512, stride=s2), TempConv(512, 512))  # 1/16
        self.stattn1 = SourceReferenceAttention(512, 512)
        self.stattn2 = SourceReferenceAttention(512, 512)
        self.selfattn1 = SourceReferenceAttention(512, 512)
        self.conv1 = TempConv(512, 512)
        self.up1 = UpsampleConcat(512, 512, 512)                                 # 1/8
        self.selfattn2 = SourceReferenceAttention(512, 512)
        self.conv2 = TempConv(512, 256, k3, padding=p1)
        self.up2 = nn.Sequential(Upsample(256, 128), TempConv(128, 64, k3, padding=p1))  # 1/4
        self.up3 = nn.Sequential(Upsample(64, 32), TempConv(32, 16, k3, padding=p1))     # 1/2
        self.up4 = nn.Sequential(Upsample(16, 8), nn.Conv3D(8, 2, k3, stride=(1, 1, 1), padding=p1))  # 1/1
        # Reference encoder: mirrors down1 (zero padding here) and down2 with one more conv.
        self.reffeatnet1 = nn.Sequential(
            TempConv(3, 64, stride=s2),
            TempConv(64, 128),
            TempConv(128, 128),
            TempConv(128, 256, stride=s2),
            TempConv(256, 256),
            TempConv(256, 256),
            TempConv(256, 512, stride=s2),
            TempConv(512, 512),
            TempConv(512, 512),
        )
        self.reffeatnet2 = nn.Sequential(
            TempConv(512, 512, stride=s2),
            TempConv(512, 512),
            TempConv(512, 512),
        )

    def forward(self, frames: paddle.Tensor, refs: paddle.Tensor | None = None) -> paddle.Tensor:
        who = "vsmsvsr.models.remaster.NetworkC"
        _check_frames(frames, 16, who)
        if refs is not None and paddle.in_dynamic_mode() and (len(refs.shape) != 5 or refs.shape[2] != 3):
            raise ValueError(f"{who}: refs must be (B, Nref, 3, Hr, Wr) RGB images, got shape {list(refs.shape)}")

        # Encoder to 1/8, attending to the references' 1/8 features (the reference index
        # plays the role of the time axis there).
        feat8 = self.down1(frames - L_OFFSET)
        if refs is not None:
            ref_feat8 = self.reffeatnet1(paddle.transpose(refs, [0, 2, 1, 3, 4]) - REF_OFFSET)
            feat8 = self.stattn1(feat8, ref_feat8)
        skip8 = self.flat(feat8)

        # Bottleneck at 1/16: references again, then self-attention over all frames.
        feat16 = self.down2(feat8)
        if refs is not None:
            feat16 = self.stattn2(feat16, self.reffeatnet2(ref_feat8))
        feat16 = self.conv1(feat16)
        feat16 = self.selfattn1(feat16, feat16)

        # Decoder: back to 1/8 with the skip, self-attention, then x2 steps to full size.
        out = self.up1(feat16, skip8)
        out = self.selfattn2(out, out)
        out = self.conv2(out)
        out = self.up2(out)
        out = self.up3(out)
        out = self.up4(out)
        return F.sigmoid(out)


# --------------------------------------------------------------------------------------------
# both


class DeepRemaster(nn.Layer):
    """Restoration followed by colorization, weight-compatible with ``deep_remaster.pdparams``.

    Attributes ``restoration`` (:class:`NetworkR`) and ``colorization`` (:class:`NetworkC`) may
    be called on their own (restoration only, or colorizing frames restored elsewhere).

    ``forward(frames, refs=None)`` runs both, as PaddleGAN's predictor does with colorization on:
    ``frames`` (B, 1, T, H, W) grey levels in [0, 1], H and W multiples of 16; ``refs``
    (B, Nref, 3, Hr, Wr) RGB in [0, 1] or ``None``. Returns ``(restored, ab)``: restored L
    (B, 1, T, H, W) in [0, 1] and ab (B, 2, T, H, W) in (0, 1), to be combined as Lab with
    L = 100*restored, a/b = 255*ab - 128. Memory: see :class:`NetworkC`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.restoration = NetworkR()
        self.colorization = NetworkC()

    def forward(self, frames: paddle.Tensor,
                refs: paddle.Tensor | None = None) -> tuple[paddle.Tensor, paddle.Tensor]:
        restored = self.restoration(frames)
        return restored, self.colorization(restored, refs)


# --------------------------------------------------------------------------------------------
# how a filter feeds the networks


def processing_size(width: int, height: int, mindim: int) -> tuple[int, int]:
    """PaddleGAN's size: scaled so the short side is ``mindim``, each side rounded to a multiple
    of 16 (at least 16). Returns ``(width, height)``."""
    scale = mindim / min(width, height)
    return (max(16, round(width * scale / 16.0) * 16), max(16, round(height * scale / 16.0) * 16))


class RemasterAdapter:
    """numpy in and out, as PaddleGAN's predictor feeds DeepRemaster: grey levels as CIE lightness,
    restored by R, colourised by C (as L*a*b*, returned as RGB)."""

    processing_size = staticmethod(processing_size)

    @staticmethod
    def window(frames: np.ndarray, restore, colorize=None, refs: np.ndarray | None = None) -> np.ndarray:
        """One window: grey ``(t, 1, h, w)`` in [0, 1] -> ``(t, 1 or 4, h, w)``: restored grey, then
        (with ``colorize``) the colourised RGB. ``restore``/``colorize`` run R and C on numpy
        (``(1, 1, t, h, w)`` -> ``[(1, 1, t, h, w)]``; ``(restored[, refs])`` -> ``[(1, 2, t, h, w)]``)."""
        from vsmsvsr.colorspace import gray_to_lightness, lab_to_rgb, lightness_to_gray

        lightness = gray_to_lightness(frames[:, 0])[None, None]            # (1, 1, t, h, w)
        (restored,) = restore(lightness)
        gray = lightness_to_gray(restored[0, 0])[:, None]                  # (t, 1, h, w)
        if colorize is None:
            return gray
        (ab,) = colorize(restored) if refs is None else colorize(restored, refs)   # (1, 2, t, h, w)
        rgb = lab_to_rgb(restored[0, 0], ab[0].transpose(1, 0, 2, 3))      # (t, 3, h, w)
        return np.concatenate([gray, rgb], axis=1)


ADAPTER = RemasterAdapter()
