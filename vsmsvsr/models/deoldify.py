"""DeOldify colorization generator (stable and artistic), weight-compatible with PaddleGAN.

Port of ``ppgan/models/generators/deoldify.py`` (PaddleGAN, Apache-2.0; itself a port of
fastai's ``DynamicUnet`` as used by DeOldify) and the spectral-norm wrapper it uses. Sub-layer
names, registration order and parameter shapes follow PaddleGAN exactly, so an official
``.pdparams`` file (a plain state dict) loads with strict key and shape checks and the forward
pass reproduces PaddleGAN's numbers.

Network (``x``: ImageNet-normalised RGB ``(B, 3, H, W)``), as ``layers.<i>`` of one list:

* ``layers.0``: ResNet encoder (torchvision layout, avgpool and fc removed): ResNet-101 with
  bottleneck blocks for ``stable``, ResNet-34 with basic blocks for ``artistic``. Its stem ReLU
  (/2), ``layer1`` (/4), ``layer2`` (/8) and ``layer3`` (/16) outputs are the U-Net skips.
* ``layers.1-3``: BN, ReLU and two conv blocks (C -> 2C -> C) at /32.
* ``layers.4-7``: four decoder blocks, deepest skip first. Each upsamples x2 (1x1 conv, BN, ReLU,
  pixel shuffle, blur), resizes to the skip's size if they differ (odd sizes), concatenates with
  ``BN(skip)``, applies ReLU and then one conv block ("wide", stable) or two ("deep", artistic).
  The second block (``layers.5``) ends with self-attention.
* ``layers.8``: weight-normalised 1x1 conv, ReLU, pixel shuffle x2 and blur, back to (H, W).
* ``layers.9``: dense merge, ``concat([features, x])``.
* ``layers.10``: residual block of two 3x3 convs with ReLU.
* ``layers.11-12``: 1x1 conv to 3 channels, then ``sigmoid * 6 - 3``.

Every decoder conv is spectral-normalised. In eval mode PaddleGAN's spectral norm does no power
iteration: the kernel is ``weight_orig / (u^T W v)`` with the stored vectors ``u``, ``v``
(non-trainable parameters in the state dict, ``spectral_norm.weight_u`` / ``weight_v``). The
kernel is computed in ``forward`` from the parameters, so it follows loaded weights and exports
into a static graph (where it is a constant expression of the weights).

Deviations from PaddleGAN, none of which changes an output:

* The network is built from a static table of channel counts instead of probing the encoder with
  a dummy 256x256 forward pass and forward hooks; the skip features are returned by the encoder.
* PaddleGAN's ``weight_norm``/``Spectralnorm`` wrappers are replaced by small layers holding the
  same parameters; the self-attention's 1x1 ``Conv1D`` layers are matrix products.
* Only the eval-mode behaviour is implemented (no power iteration, no training updates of ``u``,
  ``v``); call ``eval()`` before use, as :func:`vsmsvsr.load_model` does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from vsmsvsr.models.blocks import shape_of

__all__ = ["DeOldify", "DEOLDIFY_VARIANTS", "DeOldifyAdapter", "ADAPTER", "RENDER_BASE"]


@dataclass(frozen=True)
class _Variant:
    """Architecture of one DeOldify variant."""

    block: str  # encoder residual block: "bottleneck" (ResNet-101) or "basic" (ResNet-34)
    depths: tuple[int, int, int, int]  # residual blocks per encoder stage
    decoder: str  # "wide" (one conv per decoder block) or "deep" (two)
    nf_factor: float  # decoder width factor


#: DeOldify variants by ``model_type`` (PaddleGAN's ``build_model(model_type=...)``).
DEOLDIFY_VARIANTS = {
    "stable": _Variant("bottleneck", (3, 4, 23, 3), "wide", 2),
    "artistic": _Variant("basic", (3, 4, 6, 3), "deep", 1.5),
}

_Y_RANGE = (-3.0, 3.0)  # output range, in ImageNet-normalised units


# --------------------------------------------------------------------------------------------
# normalised convolutions


class _SpectralNormVectors(nn.Layer):
    """The stored power-iteration vectors ``weight_u`` ``[out]`` and ``weight_v`` ``[fan_in]``."""

    def __init__(self, out_channels: int, fan_in: int) -> None:
        super().__init__()
        unit_normal = nn.initializer.Normal(0.0, 1.0)
        # Non-trainable parameters (not buffers): that is how PaddleGAN stores them.
        self.weight_u = self.create_parameter([out_channels], default_initializer=unit_normal)
        self.weight_v = self.create_parameter([fan_in], default_initializer=unit_normal)
        self.weight_u.stop_gradient = True
        self.weight_v.stop_gradient = True


class _Bias(nn.Layer):
    """Holds the bias of a spectral-normalised conv (PaddleGAN keeps it in the wrapped ``layer``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = self.create_parameter([channels], is_bias=True)


class SpectralNormConv(nn.Layer):
    """Conv1D/2D whose kernel is ``weight_orig / sigma``, ``sigma = u^T reshape(weight_orig, (out, -1)) v``.

    Eval-mode spectral norm as in PaddleGAN: the stored ``u``, ``v`` are used as they are
    (no power iteration, no renormalisation). Stride 1, "same" padding.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool,
                 ndim: int = 2) -> None:
        super().__init__()
        self.ndim = ndim
        self.padding = (kernel_size - 1) // 2
        shape = [out_channels, in_channels] + [kernel_size] * ndim
        self.weight_orig = self.create_parameter(shape)
        self.spectral_norm = _SpectralNormVectors(out_channels, in_channels * kernel_size**ndim)
        self.layer = _Bias(out_channels) if bias else None

    def kernel(self) -> paddle.Tensor:
        """The spectral-normalised kernel, same shape as ``weight_orig``."""
        out_channels = self.weight_orig.shape[0]
        w = paddle.reshape(self.weight_orig, [out_channels, -1])
        sigma = paddle.sum(self.spectral_norm.weight_u * paddle.matmul(w, self.spectral_norm.weight_v))
        return self.weight_orig / sigma

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        bias = None if self.layer is None else self.layer.bias
        conv = F.conv2d if self.ndim == 2 else F.conv1d
        return conv(x, self.kernel(), bias, padding=self.padding)


class WeightNormConv2D(nn.Layer):
    """Conv2D with kernel ``g[o] * v[o] / ||v[o]||`` (norm over all but the output axis), stride 1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.padding = (kernel_size - 1) // 2
        # registration order = PaddleGAN's state dict order: bias, weight_v, weight_g
        self.bias = self.create_parameter([out_channels], is_bias=True)
        self.weight_v = self.create_parameter([out_channels, in_channels, kernel_size, kernel_size])
        self.weight_g = self.create_parameter([out_channels], default_initializer=nn.initializer.Constant(1.0))

    def kernel(self) -> paddle.Tensor:
        norm = paddle.sqrt(paddle.sum(paddle.square(self.weight_v), axis=[1, 2, 3], keepdim=True))
        return self.weight_v / norm * paddle.reshape(self.weight_g, [-1, 1, 1, 1])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.conv2d(x, self.kernel(), self.bias, padding=self.padding)


# --------------------------------------------------------------------------------------------
# decoder building blocks


def _conv_block(in_channels: int, out_channels: int, kernel_size: int = 3,
                self_attention: bool = False) -> nn.Sequential:
    """Spectral-norm conv (no bias) -> ReLU -> BN [-> self-attention] (``custom_conv_layer``)."""
    layers = [SpectralNormConv(in_channels, out_channels, kernel_size, bias=False), nn.ReLU(),
              nn.BatchNorm2D(out_channels)]
    if self_attention:
        layers.append(SelfAttention(out_channels))
    return nn.Sequential(*layers)


def _blur(x: paddle.Tensor) -> paddle.Tensor:
    """Replicate-pad left and top by one, then 2x2 mean with stride 1 (same size out).

    Softens the checkerboard pattern of pixel shuffle; applied after every pixel shuffle.
    """
    return F.avg_pool2d(F.pad(x, [1, 0, 1, 0], mode="replicate"), kernel_size=2, stride=1)


class PixelShuffleUpsample(nn.Layer):
    """x2 upsampling: 1x1 conv to 4 * ``out_channels`` (+ BN), ReLU, pixel shuffle, blur."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(SpectralNormConv(in_channels, out_channels * 4, 1, bias=False),
                                  nn.BatchNorm2D(out_channels * 4))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return _blur(F.pixel_shuffle(F.relu(self.conv(x)), 2))


class SelfAttention(nn.Layer):
    """SAGAN self-attention over all H*W positions; ``gamma * attention(x) + x``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = self.create_parameter([1], default_initializer=nn.initializer.Constant(0.0))
        self.query = SpectralNormConv(channels, channels // 8, 1, bias=False, ndim=1)
        self.key = SpectralNormConv(channels, channels // 8, 1, bias=False, ndim=1)
        self.value = SpectralNormConv(channels, channels, 1, bias=False, ndim=1)

    @staticmethod
    def _project(conv: SpectralNormConv, x: paddle.Tensor) -> paddle.Tensor:
        """1x1 Conv1D of ``x`` (B, C, N) as a matrix product with the normalised kernel."""
        return paddle.matmul(paddle.squeeze(conv.kernel(), axis=[2]), x)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        flat = paddle.reshape(x, [0, 0, -1])  # (B, C, N); 0 keeps that axis
        f = self._project(self.query, flat)  # (B, C/8, N)
        g = self._project(self.key, flat)  # (B, C/8, N)
        h = self._project(self.value, flat)  # (B, C, N)
        # beta[i, j] = softmax over the query positions i (axis 1) of f_i . g_j, as in PaddleGAN
        beta = F.softmax(paddle.matmul(f, g, transpose_x=True), axis=1)  # (B, N, N)
        out = self.gamma * paddle.matmul(h, beta) + flat
        return paddle.reshape(out, shape_of(x))


@paddle.jit.not_to_static  # plain Python on static shapes: no traced control flow
def _resize_like(x: paddle.Tensor, ref: paddle.Tensor) -> paddle.Tensor:
    """``x`` resized (nearest) to ``ref``'s height and width if they differ (odd input sizes).

    With sizes unknown until run time (a static graph with dynamic H, W) it always resizes.
    """
    x_hw, ref_hw = list(x.shape[2:]), list(ref.shape[2:])
    if min(x_hw + ref_hw) >= 0:  # static sizes: resize only when needed
        return x if x_hw == ref_hw else F.interpolate(x, size=ref_hw, mode="nearest")
    # unknown sizes in a static graph: nearest resize to the same size is an exact copy
    return F.interpolate(x, size=paddle.shape(ref)[2:], mode="nearest")


class UnetBlock(nn.Layer):
    """One decoder step: upsample ``up_in`` x2, fuse with ``BN(skip)``, then conv block(s).

    ``wide`` (stable): ``shuf, bn, conv``; ``deep`` (artistic): ``shuf, bn, conv1, conv2``.
    The last conv block ends with self-attention when ``self_attention``.
    """

    def __init__(self, up_channels: int, skip_channels: int, shuffle_channels: int,
                 conv_channels: int, deep: bool, self_attention: bool) -> None:
        super().__init__()
        self.deep = deep
        self.shuf = PixelShuffleUpsample(up_channels, shuffle_channels)
        self.bn = nn.BatchNorm2D(skip_channels)
        merged = shuffle_channels + skip_channels
        if deep:
            self.conv1 = _conv_block(merged, conv_channels)
            self.conv2 = _conv_block(conv_channels, conv_channels, self_attention=self_attention)
        else:
            self.conv = _conv_block(merged, conv_channels, self_attention=self_attention)

    def forward(self, up_in: paddle.Tensor, skip: paddle.Tensor) -> paddle.Tensor:
        up = _resize_like(self.shuf(up_in), skip)
        x = F.relu(paddle.concat([up, self.bn(skip)], axis=1))
        return self.conv2(self.conv1(x)) if self.deep else self.conv(x)


class ResidualBlock(nn.Layer):
    """``x + relu(conv(relu(conv(x))))`` with biased spectral-norm 3x3 convs, no BN."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layers = nn.LayerList([
            nn.Sequential(SpectralNormConv(channels, channels, 3, bias=True), nn.ReLU()) for _ in range(2)
        ])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.layers[1](self.layers[0](x)) + x


class FinalUpsample(nn.Layer):
    """x2 upsampling without BN: weight-normalised 1x1 conv, ReLU, pixel shuffle, blur.

    PaddleGAN builds this ``PixelShuffle_ICNR`` with its blur option off but blurs anyway.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(WeightNormConv2D(channels, channels * 4, 1))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return _blur(F.pixel_shuffle(F.relu(self.conv(x)), 2))


class _DenseMerge(nn.Layer):
    """Placeholder of PaddleGAN's parameter-free ``MergeLayer(dense=True)`` (``layers.9``)."""


class _SigmoidRange(nn.Layer):
    """``sigmoid(x)`` scaled to ``(low, high)`` (``layers.12``)."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.sigmoid(x) * (self.high - self.low) + self.low


# --------------------------------------------------------------------------------------------
# encoder (paddle.vision ResNet layout: conv1, bn1, relu, maxpool, layer1-4)


class _BasicBlock(nn.Layer):
    """ResNet-18/34 block: 3x3 (stride) -> 3x3, plus the (downsampled) input."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2D(in_channels, width, 3, stride=stride, padding=1, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(width)
        self.conv2 = nn.Conv2D(width, width, 3, padding=1, bias_attr=False)
        self.bn2 = nn.BatchNorm2D(width)
        self.downsample = _downsample(in_channels, width, stride)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + identity)


class _Bottleneck(nn.Layer):
    """ResNet-50/101 block: 1x1 -> 3x3 (stride) -> 1x1 to 4x width, plus the (downsampled) input."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2D(in_channels, width, 1, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(width)
        self.conv2 = nn.Conv2D(width, width, 3, stride=stride, padding=1, bias_attr=False)
        self.bn2 = nn.BatchNorm2D(width)
        self.conv3 = nn.Conv2D(width, width * 4, 1, bias_attr=False)
        self.bn3 = nn.BatchNorm2D(width * 4)
        self.downsample = _downsample(in_channels, width * 4, stride)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + identity)


def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2D(in_channels, out_channels, 1, stride=stride, bias_attr=False),
                         nn.BatchNorm2D(out_channels))


class ResNetEncoder(nn.Sequential):
    """ResNet without avgpool and fc: children ``0`` conv1, ``1`` bn1, ``2`` relu, ``3`` maxpool,
    ``4``-``7`` layer1-layer4. ``forward`` returns the /32 features and the four skips
    (children 2, 4, 5, 6: /2, /4, /8, /16), shallowest first."""

    def __init__(self, block: str, depths: tuple[int, int, int, int]) -> None:
        block_cls = _Bottleneck if block == "bottleneck" else _BasicBlock
        layers = [nn.Conv2D(3, 64, 7, stride=2, padding=3, bias_attr=False), nn.BatchNorm2D(64), nn.ReLU(),
                  nn.MaxPool2D(3, stride=2, padding=1)]
        in_channels = 64
        stage_channels = []
        for stage, depth in enumerate(depths):
            width = 64 * 2**stage
            blocks = []
            for i in range(depth):
                blocks.append(block_cls(in_channels, width, 2 if (i == 0 and stage > 0) else 1))
                in_channels = width * block_cls.expansion
            layers.append(nn.Sequential(*blocks))
            stage_channels.append(in_channels)
        super().__init__(*layers)
        self.stage_channels = tuple(stage_channels)  # output channels of layer1-layer4

    def forward(self, x: paddle.Tensor) -> tuple[paddle.Tensor, list[paddle.Tensor]]:
        skips = []
        for index, layer in enumerate(self.children()):
            x = layer(x)
            if index in (2, 4, 5, 6):
                skips.append(x)
        return x, skips


# --------------------------------------------------------------------------------------------
# the generator


class DeOldify(nn.Layer):
    """DeOldify generator: grey (or colour) image in, colourised image out.

    Args:
        model_type: ``"stable"`` (ResNet-101 encoder, wide decoder, 218.5 M values) or
            ``"artistic"`` (ResNet-34 encoder, deep decoder, 63.8 M values).

    ``forward(x)``: ``x`` ``(B, 3, H, W)`` float32 RGB, ImageNet-normalised
    (``(rgb - mean) / std``); any H, W >= 32 (PaddleGAN's predictor feeds a grey image as three
    equal channels at 16 * render_factor square). Returns ``(B, 3, H, W)`` in ``(-3, 3)``, in the
    same normalised space.
    """

    def __init__(self, model_type: str = "stable") -> None:
        super().__init__()
        if model_type not in DEOLDIFY_VARIANTS:
            raise ValueError(f"vsmsvsr.models.DeOldify: model_type must be one of "
                             f"{', '.join(map(repr, DEOLDIFY_VARIANTS))}, got {model_type!r}")
        variant = DEOLDIFY_VARIANTS[model_type]
        self.model_type = model_type
        encoder = ResNetEncoder(variant.block, variant.depths)
        bottom = encoder.stage_channels[3]
        # skip channels, deepest first: layer3, layer2, layer1, stem relu
        skip_channels = list(encoder.stage_channels[2::-1]) + [64]

        layers = [encoder, nn.BatchNorm2D(bottom), nn.ReLU(),
                  nn.Sequential(_conv_block(bottom, bottom * 2), _conv_block(bottom * 2, bottom))]
        channels = bottom
        for i, skip in enumerate(skip_channels):
            final = i == len(skip_channels) - 1
            self_attention = i == len(skip_channels) - 3
            if variant.decoder == "wide":  # fastai UnetBlockWide, nf = 512 * nf_factor
                n_out = int(512 * variant.nf_factor) // (2 if final else 1)
                shuffled, out = n_out // 2, n_out // 2
            else:  # UnetBlockDeep: halve the up path; conv width from the merged channels
                shuffled = channels // 2
                merged = shuffled + skip
                out = int((merged // 2 if final else merged) * variant.nf_factor)
            layers.append(UnetBlock(channels, skip, shuffled, out, deep=variant.decoder == "deep",
                                    self_attention=self_attention))
            channels = out
        merged = channels + 3
        layers += [
            FinalUpsample(channels),  # layers.8
            _DenseMerge(),  # layers.9
            ResidualBlock(merged),  # layers.10
            nn.Sequential(SpectralNormConv(merged, 3, 1, bias=True)),  # layers.11
            _SigmoidRange(*_Y_RANGE),  # layers.12
        ]
        self.layers = nn.LayerList(layers)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """``x`` (B, 3, H, W) normalised RGB -> (B, 3, H, W) in (-3, 3), normalised RGB."""
        if len(x.shape) != 4 or x.shape[1] != 3:
            raise ValueError(f"vsmsvsr.models.DeOldify: input must be (B, 3, H, W), got {list(x.shape)}")
        layers = self.layers
        encoder, bn, middle, final_upsample = layers[0], layers[1], layers[3], layers[8]
        decoder = [layers[i] for i in range(4, 8)]
        residual, head, output_range = layers[10], layers[11], layers[12]

        # encoder: /32 features and the skips (/2, /4, /8, /16)
        feat, skips = encoder(x)
        # bottleneck: BN, ReLU, C -> 2C -> C conv blocks
        feat = middle(F.relu(bn(feat)))
        # decoder: deepest skip first, back to /2
        for block, skip in zip(decoder, reversed(skips)):
            feat = block(feat, skip)
        # final x2 upsample to the input size
        feat = final_upsample(feat)
        # dense merge with the network input, residual block, 1x1 conv to RGB, sigmoid range
        feat = paddle.concat([feat, x], axis=1)
        return output_range(head(residual(feat)))


# --------------------------------------------------------------------------------------------
# how a filter feeds the network

#: Side of DeOldify's square input = RENDER_BASE * render_factor (PaddleGAN's render_base).
RENDER_BASE = 16
_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)


class DeOldifyAdapter:
    """numpy in and out, as PaddleGAN's predictor feeds DeOldify: a grey frame becomes an
    ImageNet-normalised grey RGB image, and the network's output is de-normalised to RGB."""

    #: the network sees squares of ``render_base * render_factor`` pixels
    render_base = RENDER_BASE

    @staticmethod
    def prepare(gray: np.ndarray) -> np.ndarray:
        """Grey ``(h, w)`` float32 in [0, 1] -> the network's input ``(1, 3, h, w)`` float32."""
        x = (np.broadcast_to(gray, (3, *gray.shape)) - _MEAN) / _STD
        return x[None].astype(np.float32)

    @staticmethod
    def finish(y: np.ndarray) -> np.ndarray:
        """The network's output ``(1, 3, h, w)`` -> RGB ``(3, h, w)`` float32 in [0, 1]."""
        return np.clip(y[0] * _STD + _MEAN, 0.0, 1.0)


ADAPTER = DeOldifyAdapter()
