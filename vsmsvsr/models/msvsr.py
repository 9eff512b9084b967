"""PP-MSVSR (multi-stage video super-resolution, x4), weight-compatible with PaddleGAN.

Port of ``ppgan/models/generators/msvsr.py`` (PaddleGAN, Apache-2.0) and the pieces of
``basicvsr.py`` it uses. Sub-layer names, registration order and parameter shapes follow PaddleGAN
exactly (typos included: ``covn1``, ``ResidualBlocks.block<i>``, ``Leaky_relu``), so an official
``.pdparams`` state dict loads with strict key and shape checks and the forward pass reproduces
PaddleGAN's numbers.

Network (t frames of ``(n, 3, h, w)``, features of ``mid_channels`` at input resolution):

* SPyNet (``spynet``): optical flow between neighbouring frames, both directions.
* Stage 1, local fusion: every frame fuses its two flow-guided, deformably aligned neighbours.
* Stage 2: backward then forward recurrent propagation with flow-guided deformable alignment,
  followed by an auxiliary x4 reconstruction whose image is downsampled again into new features.
* Stage 3: a second backward/forward propagation over the auxiliary features; its re-alignment
  starts from the stage-2 offsets and masks of the same direction and frame step.
* Reconstruction: all features per frame -> two pixel-shuffle x2 steps + bilinear x4 skip, plus a
  "local connect" head that upsamples the stage-1 feature with the auxiliary upsamplers.

Deviations from PaddleGAN, none of which changes an output:

* Constructing the network neither downloads nor loads SPyNet weights (PaddleGAN fetches
  pretrained SPyNet weights in ``__init__``; the official MSVSR checkpoints contain them anyway).
* The mirror-sequence test uses ``paddle.equal_all`` instead of ``norm(a - b) == 0`` and can be
  switched off (``check_mirror``) for static-graph export; the shortcut it enables is exact.
* ``return_aux=False`` returns only the main output (the auxiliary image is still computed,
  because stage 3 is fed from it, but it is not kept or stacked).
* ``auxiliary_loss=False`` and ``use_refine_align=False`` are refused: PaddleGAN's forward
  raises for both (unbound ``aux_feats``; ``AlignmentModule`` called with six arguments).
* Stage 3 does not compute the warped feature that PaddleGAN builds and then ignores.
* Stage 2's offsets and masks are not kept for the whole window; stage 3 recomputes each
  frame's pair from the kept stage-2 features when it needs it (``keep_offsets=False``).
  Same operations on the same values, bit-identical results; about half the per-frame
  memory of a window.
* Tensors created inside ``forward`` derive from the input (``zeros_like``, a pixel grid from
  ``cumsum``), so the model runs on whatever device its parameters and input are on and traces
  into a static graph without Python-side tensor values.
"""
from __future__ import annotations

from typing import Callable

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.vision.ops import DeformConv2D

from vsmsvsr.models.blocks import (conv_after_shuffle_stride2, conv_of_concat, shape_of, sub_pixel_conv,
                                   sub_pixel_kernels)

__all__ = ["MSVSR", "ModifiedSPyNet", "flow_warp"]

_MIN_SIZE = 64


def _zero_init() -> paddle.ParamAttr:
    return paddle.ParamAttr(initializer=nn.initializer.Constant(0.0))


# --------------------------------------------------------------------------------------------
# building blocks (basicvsr.py)


def flow_warp(x: paddle.Tensor, flow: paddle.Tensor, padding_mode: str = "zeros") -> paddle.Tensor:
    """Warp ``x`` (n, c, h, w) by ``flow`` (n, h, w, 2): pixel displacements, channel 0 = x.

    Bilinear sampling, ``align_corners=True``; outside pixels follow ``padding_mode``
    (``'zeros'`` for features, ``'border'`` inside SPyNet).
    """
    h, w = x.shape[2], x.shape[3]
    # Pixel coordinate grid built from the flow tensor itself (device- and trace-agnostic);
    # cumulative sums of ones are exact integers, the same values as PaddleGAN's arange grid.
    ones = paddle.ones_like(flow[:, :, :, 0])
    grid_x = paddle.cumsum(ones, axis=2) - 1.0
    grid_y = paddle.cumsum(ones, axis=1) - 1.0
    # Same arithmetic, in the same order, as PaddleGAN's flow_warp.
    grid_flow_x = 2.0 * (grid_x + flow[:, :, :, 0]) / max(w - 1, 1) - 1.0
    grid_flow_y = 2.0 * (grid_y + flow[:, :, :, 1]) / max(h - 1, 1) - 1.0
    grid_flow = paddle.stack((grid_flow_x, grid_flow_y), axis=3)
    return F.grid_sample(x, grid_flow, mode="bilinear", padding_mode=padding_mode, align_corners=True)


class ResidualBlockNoBN(nn.Layer):
    """conv3x3 -> ReLU -> conv3x3, plus the input."""

    def __init__(self, nf: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2D(nf, nf, 3, 1, 1)
        self.conv2 = nn.Conv2D(nf, nf, 3, 1, 1)
        self.relu = nn.ReLU()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class ResidualBlocksWithInputConv(nn.Layer):
    """conv3x3 + LeakyReLU(0.1) to ``out_channels``, then ``num_blocks`` residual blocks."""

    def __init__(self, in_channels: int, out_channels: int = 64, num_blocks: int = 30) -> None:
        super().__init__()
        self.covn1 = nn.Conv2D(in_channels, out_channels, 3, 1, 1)  # sic: PaddleGAN's key name
        self.Leaky_relu = nn.LeakyReLU(negative_slope=0.1)
        self.ResidualBlocks = nn.Sequential()
        for i in range(num_blocks):
            self.ResidualBlocks.add_sublayer(f"block{i}", ResidualBlockNoBN(out_channels))

    def forward(self, feat: paddle.Tensor) -> paddle.Tensor:
        return self.ResidualBlocks(self.Leaky_relu(self.covn1(feat)))

    def of_parts(self, parts: list[paddle.Tensor]) -> paddle.Tensor:
        """``forward(paddle.concat(parts, axis=1))`` for a compiled program: the input convolution
        as one per part (:func:`conv_of_concat`), the same maths summed in another order."""
        return self.ResidualBlocks(self.Leaky_relu(conv_of_concat(self.covn1, parts)))


class PixelShufflePack(nn.Layer):
    """Conv to ``out_channels * scale**2`` channels, then pixel shuffle by ``scale``."""

    def __init__(self, in_channels: int, out_channels: int, scale_factor: int, upsample_kernel: int) -> None:
        super().__init__()
        self.upsample_conv = nn.Conv2D(
            in_channels, out_channels * scale_factor * scale_factor, upsample_kernel,
            padding=(upsample_kernel - 1) // 2,
        )
        self.pixel_shuffle = nn.PixelShuffle(scale_factor)

    def forward(self, x: paddle.Tensor, activation: Callable | None = None) -> paddle.Tensor:
        """``activation(pixel_shuffle(conv(x)))``, computed as ``pixel_shuffle(activation(conv(x)))``.

        ``activation`` is element-wise (a LeakyReLU), so the two are the same values bit for bit;
        applied before the shuffle, a compiled program fuses it into the convolution instead of
        running it over the shuffled tensor (32 channels at 4x: 20 ms per 180x320 frame).
        """
        y = self.upsample_conv(x)
        return self.pixel_shuffle(y if activation is None else activation(y))


def _offset_head(channels: int, deform_groups: int) -> nn.Sequential:
    """Three conv+LeakyReLU, then a conv to 27*G channels (o1, o2, mask); last layer zero-init.

    Read it with :func:`_offset_logits`, not by calling it.
    """
    return nn.Sequential(
        nn.Conv2D(2 * channels + 2, channels, 3, 1, 1),
        nn.LeakyReLU(negative_slope=0.1),
        nn.Conv2D(channels, channels, 3, 1, 1),
        nn.LeakyReLU(negative_slope=0.1),
        nn.Conv2D(channels, channels, 3, 1, 1),
        nn.LeakyReLU(negative_slope=0.1),
        nn.Conv2D(channels, 27 * deform_groups, 3, 1, 1, weight_attr=_zero_init(), bias_attr=_zero_init()),
    )


def _offset_logits(head: nn.Sequential, x: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
    """``o1 ‖ o2`` and ``mask`` of ``head(x)`` (PaddleGAN's ``chunk(head(x), 3)``): ``(n, 18*G, h, w)``,
    ``(n, 9*G, h, w)``.

    The last convolution runs as two, on the offset rows and on the mask rows of its weights:
    the same values (bit for bit on oneDNN), but a compiled program then has no split of the
    27*G-channel output and no concatenation of o1 and o2, which the CPU plugin copies with its
    reference kernels (a fifth of an alignment step at 180x320).
    """
    *body, last = head
    for layer in body:
        x = layer(x)
    k = last.weight.shape[0] // 3
    return (F.conv2d(x, last.weight[:2 * k], last.bias[:2 * k], padding=1),  # 3x3, stride 1, as built above
            F.conv2d(x, last.weight[2 * k:], last.bias[2 * k:], padding=1))


class ConvBeforeShuffle(nn.Layer):
    """``conv``, a 3x3 convolution that follows a pixel shuffle by 2, run before it as a 2x2
    convolution per sub-pixel (:func:`sub_pixel_conv`), its kernel computed once from ``conv``'s
    weights when built: a program holds it as a weight, not as the operations that make it (which
    Paddle Inference's passes refuse). Input (n, 4c, h, w), output (n, 4o, h, w) to be shuffled.
    """

    def __init__(self, conv: nn.Conv2D) -> None:
        super().__init__()
        with paddle.no_grad():
            weight, bias = sub_pixel_kernels(conv.weight, conv.bias)
        self.weight = self.create_parameter(weight.shape, default_initializer=nn.initializer.Assign(weight))
        self.bias = self.create_parameter(bias.shape, is_bias=True, default_initializer=nn.initializer.Assign(bias))

    def forward(self, y: paddle.Tensor) -> paddle.Tensor:
        return sub_pixel_conv(y, self.weight, self.bias)


class StridedConvOfShuffled(nn.Layer):
    """``conv`` (3x3, stride 2, padding 1) of ``concat(x, pixel_shuffle(y, 2))``, where ``x`` has its
    first ``start`` input channels: ``x`` as it is, ``y`` unshuffled as a 2x2 convolution
    (:func:`conv_after_shuffle_stride2`), the kernels computed once when built. The shuffled tensor
    (four times ``y``'s pixels) is never made. Output (n, o, h, w) for ``y`` (n, 4c, h, w)."""

    def __init__(self, conv: nn.Conv2D, start: int) -> None:
        super().__init__()
        with paddle.no_grad():
            own, shuffled = conv.weight[:, :start].clone(), conv_after_shuffle_stride2(conv.weight[:, start:])
        self.weight = self.create_parameter(own.shape, default_initializer=nn.initializer.Assign(own))
        self.shuffled_weight = self.create_parameter(shuffled.shape, default_initializer=nn.initializer.Assign(shuffled))
        self.bias = self.create_parameter(conv.bias.shape, is_bias=True,
                                          default_initializer=nn.initializer.Assign(conv.bias))

    def forward(self, x: paddle.Tensor, y: paddle.Tensor) -> paddle.Tensor:
        return (F.conv2d(x, self.weight, self.bias, stride=2, padding=1)
                + F.conv2d(y, self.shuffled_weight, padding=[1, 0, 1, 0]))


class AlignmentModule(nn.Layer):
    """Flow-guided deformable alignment (stage 1 and stage 2).

    ``conv_offset(concat(extra_feat, flow))`` gives (o1, o2, m); offset = 10*tanh(o1, o2) plus the
    flow as (dy, dx) on every tap; mask = sigmoid(m); output = DCNv2(x, offset, mask).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1,
                 deformable_groups: int = 16) -> None:
        super().__init__()
        self.conv_offset = _offset_head(out_channels, deformable_groups)
        self.dcn = DeformConv2D(in_channels, out_channels, kernel_size=kernel_size, padding=padding,
                                deformable_groups=deformable_groups)

    def offsets(self, extra_feat: paddle.Tensor, flow: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        """The (offset, mask) that ``forward`` samples with: ``(n, 18*g, h, w)``, ``(n, 9*g, h, w)``."""
        o1o2, mask = _offset_logits(self.conv_offset, paddle.concat([extra_feat, flow], axis=1))
        offset = 10 * paddle.tanh(o1o2)
        # + the flow (y, x) on every (y, x) pair, by broadcasting: the same sums as PaddleGAN's
        # tile of the flow to 18*G channels, which a compiled program copies twice more
        shape = shape_of(offset)
        pairs = offset.reshape([shape[0], -1, 2, shape[2], shape[3]]) + flow.flip(1).unsqueeze(1)
        offset = pairs.reshape(shape)
        return offset, F.sigmoid(mask)

    def forward(self, x: paddle.Tensor, extra_feat: paddle.Tensor, flow: paddle.Tensor):
        offset, mask = self.offsets(extra_feat, flow)
        return self.dcn(x, offset, mask), offset, mask


class ReAlignmentModule(nn.Layer):
    """Stage-3 refine alignment, starting from the stage-2 offset and mask.

    ``mdconv(x, pre_offset, pre_mask)``, concatenated with the current feature and the flow,
    feeds ``conv_offset``; offset = 10*tanh(o1, o2) + pre_offset, mask = (sigmoid(m) + pre_mask) / 2;
    output = ``dcn(x, offset, mask)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1,
                 deformable_groups: int = 16) -> None:
        super().__init__()
        self.mdconv = DeformConv2D(in_channels, out_channels, kernel_size=kernel_size, padding=padding,
                                   deformable_groups=deformable_groups)
        self.conv_offset = _offset_head(out_channels, deformable_groups)
        self.dcn = DeformConv2D(in_channels, out_channels, kernel_size=kernel_size, padding=padding,
                                deformable_groups=deformable_groups)

    def offsets(self, pre_feat: paddle.Tensor, feat_current: paddle.Tensor, flow: paddle.Tensor,
                pre_offset: paddle.Tensor, pre_mask: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        """The (offset, mask) of ``dcn``, from ``pre_feat = mdconv(x, pre_offset, pre_mask)``."""
        o1o2, mask = _offset_logits(self.conv_offset, paddle.concat([pre_feat, feat_current, flow], axis=1))
        offset = 10 * paddle.tanh(o1o2) + pre_offset
        return offset, (F.sigmoid(mask) + pre_mask) / 2.0

    def forward(self, x: paddle.Tensor, flow: paddle.Tensor, feat_current: paddle.Tensor,
                pre_offset: paddle.Tensor, pre_mask: paddle.Tensor) -> paddle.Tensor:
        pre_feat = self.mdconv(x, pre_offset, pre_mask)
        offset, mask = self.offsets(pre_feat, feat_current, flow, pre_offset, pre_mask)
        return self.dcn(x, offset, mask)


# --------------------------------------------------------------------------------------------
# SPyNet (modified: 3x3 convs, no BN)


class ConvLayer(nn.Layer):
    """3x3 conv, optionally followed by LeakyReLU(0.1)."""

    def __init__(self, in_channels: int, out_channels: int, activate: bool = True) -> None:
        super().__init__()
        self.with_activation = activate
        self.conv = nn.Conv2D(in_channels, out_channels, 3, 1, 1)
        if activate:
            self.act = nn.LeakyReLU(negative_slope=0.1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.conv(x)
        return self.act(out) if self.with_activation else out


# Channel chains of one pyramid-level block: input 8 = ref (3) + warped supp (3) + flow (2).
_TINY_BLOCK = (8, 16, 16, 32, 32, 32, 32, 16, 16, 16, 8, 8, 2)
_FULL_BLOCK = (8, 16, 16, 32, 32, 32, 64, 32, 32, 32, 16, 16, 16, 16, 16, 2)


class SPyNetBlock(nn.Layer):
    """One pyramid level: a chain of 3x3 convs with LeakyReLU after all but the last."""

    def __init__(self, use_tiny_block: bool = False) -> None:
        super().__init__()
        chans = _TINY_BLOCK if use_tiny_block else _FULL_BLOCK
        last = len(chans) - 2
        self.basic_module = nn.Sequential(
            *[ConvLayer(chans[i], chans[i + 1], activate=i != last) for i in range(len(chans) - 1)]
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.basic_module(x)


class ModifiedSPyNet(nn.Layer):
    """PaddleGAN's modified SPyNet: ``num_blocks`` pyramid levels of 3x3 conv blocks.

    ``forward(ref, supp)`` takes two ``(n, 3, h, w)`` RGB batches in [0, 1] and returns the flow
    from ``ref`` to ``supp``, ``(n, 2, h, w)`` in pixels (channel 0 = x, 1 = y).
    """

    def __init__(self, num_blocks: int = 6, use_tiny_block: bool = False) -> None:
        super().__init__()
        self.num_blocks = num_blocks
        self.basic_module = nn.LayerList([SPyNetBlock(use_tiny_block) for _ in range(num_blocks)])
        self.register_buffer("mean", paddle.to_tensor([0.485, 0.456, 0.406], dtype="float32").reshape([1, 3, 1, 1]))
        self.register_buffer("std", paddle.to_tensor([0.229, 0.224, 0.225], dtype="float32").reshape([1, 3, 1, 1]))

    def compute_flow(self, ref: paddle.Tensor, supp: paddle.Tensor) -> paddle.Tensor:
        """Flow from ``ref`` to ``supp``; h and w must be multiples of 2**(num_blocks-1)."""
        ref = [(ref - self.mean) / self.std]
        supp = [(supp - self.mean) / self.std]
        for _ in range(self.num_blocks - 1):
            ref.append(F.avg_pool2d(ref[-1], kernel_size=2, stride=2))
            supp.append(F.avg_pool2d(supp[-1], kernel_size=2, stride=2))
        ref = ref[::-1]
        supp = supp[::-1]

        flow = paddle.zeros_like(ref[0][:, :2])  # coarsest level starts from zero flow
        for level in range(self.num_blocks):
            if level == 0:
                flow_up = flow
            else:
                flow_up = F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=True) * 2.0
            warped = flow_warp(supp[level], flow_up.transpose([0, 2, 3, 1]), padding_mode="border")
            flow = flow_up + self.basic_module[level](paddle.concat([ref[level], warped, flow_up], axis=1))
        return flow

    def forward(self, ref: paddle.Tensor, supp: paddle.Tensor) -> paddle.Tensor:
        h, w = ref.shape[2], ref.shape[3]
        # resize to the next multiple of 32, compute, resize back and rescale the displacements
        w_up = w if w % 32 == 0 else 32 * (w // 32 + 1)
        h_up = h if h % 32 == 0 else 32 * (h // 32 + 1)
        ref = F.interpolate(ref, size=(h_up, w_up), mode="bilinear", align_corners=False)
        supp = F.interpolate(supp, size=(h_up, w_up), mode="bilinear", align_corners=False)
        flow = F.interpolate(self.compute_flow(ref, supp), size=(h, w), mode="bilinear", align_corners=False)
        return paddle.concat(
            [flow[:, 0:1] * (float(w) / float(w_up)), flow[:, 1:2] * (float(h) / float(h_up))], axis=1
        )


# --------------------------------------------------------------------------------------------
# MSVSR


class _Step(nn.Layer):
    """One of MSVSR's step methods as a layer of its own (for ``MSVSR.engine_segments``):
    ``forward(*inputs)`` = ``method(model, *args, *inputs)``, or with ``packed``,
    ``method(model, *args, list(inputs))``. ``model`` is registered, so the step's parameters
    are the layer's."""

    def __init__(self, method: Callable, model: nn.Layer, *args: str, packed: bool = False) -> None:
        super().__init__()
        self.model = model
        self._method, self._args, self._packed = method, args, packed

    # named parameters, not *inputs: Paddle's tracer maps input specs onto a real signature
    def forward(self, x0: paddle.Tensor, x1: paddle.Tensor | None = None, x2: paddle.Tensor | None = None,
                x3: paddle.Tensor | None = None, x4: paddle.Tensor | None = None, x5: paddle.Tensor | None = None):
        inputs = [x for x in (x0, x1, x2, x3, x4, x5) if x is not None]
        if self._packed:
            return self._method(self.model, *self._args, list(inputs))
        return self._method(self.model, *self._args, *inputs)


class MSVSR(nn.Layer):
    """PP-MSVSR x4 video super-resolution network (PaddleGAN's ``MSVSR``).

    Constructor arguments and defaults are PaddleGAN's (defaults = PP-MSVSR, 1,453,607 parameters).
    ``return_aux`` and ``check_mirror`` are additions and may also be set as attributes later.

    Args:
        mid_channels: feature channels. Default 32.
        num_init_blocks: residual blocks of the feature extractor. Default 2.
        num_blocks: residual blocks of each stage-2/3 propagation branch. Default 3.
        num_reconstruction_blocks: residual blocks of the reconstruction. Default 2.
        only_last: if False, an extra conv (``conv_hr``) + LeakyReLU before ``conv_last``. Default True.
        use_tiny_spynet: 3-level SPyNet with tiny blocks (True) or 6-level full blocks. Default True.
        deform_groups: deformable groups of stages 2 and 3. Default 4.
        stage1_groups: deformable groups of stage 1. Default 8.
        auxiliary_loss: must be True (PaddleGAN's forward fails without it).
        use_refine_align: must be True (PaddleGAN's forward fails without it).
        aux_reconstruction_blocks: residual blocks of the auxiliary reconstruction. Default 1.
        use_local_connnect: add the upsampled stage-1 feature head (sic, PaddleGAN's spelling). Default True.
        return_aux: ``forward`` returns ``(aux, out)`` like PaddleGAN if True, else only ``out``.
        check_mirror: in dygraph, test whether the input is a mirror-extended sequence and then
            reuse the backward flows for the forward direction (exact, saves half the flow work).
            Set False before static-graph export: the test is data-dependent control flow.
        keep_offsets: stage 3 starts from the offsets and masks of stage 2. PaddleGAN keeps them
            for every frame of the window (27 * ``deform_groups`` channels per frame and direction,
            about as much as all the frame's features together). False (default) recomputes
            each frame's pair from the stage-2 features, which are kept anyway, when stage 3
            reaches that frame: the same operations on the same values, so the same result, for
            about 5% more convolution work (counted by ``bench/bench_msvsr.py``).
    """

    def __init__(
        self,
        mid_channels: int = 32,
        num_init_blocks: int = 2,
        num_blocks: int = 3,
        num_reconstruction_blocks: int = 2,
        only_last: bool = True,
        use_tiny_spynet: bool = True,
        deform_groups: int = 4,
        stage1_groups: int = 8,
        auxiliary_loss: bool = True,
        use_refine_align: bool = True,
        aux_reconstruction_blocks: int = 1,
        use_local_connnect: bool = True,
        *,
        return_aux: bool = True,
        check_mirror: bool = True,
        keep_offsets: bool = False,
    ) -> None:
        super().__init__()
        if not auxiliary_loss:
            raise ValueError("vsmsvsr.models.MSVSR: auxiliary_loss=False is not supported "
                             "(PaddleGAN's MSVSR forward fails without the auxiliary stage)")
        if not use_refine_align:
            raise ValueError("vsmsvsr.models.MSVSR: use_refine_align=False is not supported "
                             "(PaddleGAN's MSVSR forward fails without the refine alignment)")
        self.mid_channels = mid_channels
        self.only_last = only_last
        self.deform_groups = deform_groups
        self.auxiliary_loss = auxiliary_loss
        self.use_refine_align = use_refine_align
        self.use_local_connnect = use_local_connnect
        self.return_aux = return_aux
        self.check_mirror = check_mirror
        self.keep_offsets = keep_offsets

        # Registration order = state_dict order = PaddleGAN's.
        if use_tiny_spynet:
            self.spynet = ModifiedSPyNet(num_blocks=3, use_tiny_block=True)
        else:
            self.spynet = ModifiedSPyNet(num_blocks=6, use_tiny_block=False)

        self.feat_extract = ResidualBlocksWithInputConv(3, mid_channels, num_init_blocks)

        self.deform_align = nn.LayerDict()
        self.backbone = nn.LayerDict()
        for i, name in enumerate(("stage2_backward", "stage2_forward", "stage3_backward", "stage3_forward")):
            module = ReAlignmentModule if i > 1 else AlignmentModule
            self.deform_align[name] = module(mid_channels, mid_channels, 3, padding=1,
                                             deformable_groups=deform_groups)
            # input: current feature + every earlier branch + the propagated feature
            self.backbone[name] = ResidualBlocksWithInputConv((3 + i) * mid_channels, mid_channels, num_blocks)

        self.stage1_align = AlignmentModule(mid_channels, mid_channels, 3, padding=1,
                                            deformable_groups=stage1_groups)
        self.stage1_blocks = ResidualBlocksWithInputConv(3 * mid_channels, mid_channels, 3)

        self.reconstruction = ResidualBlocksWithInputConv(6 * mid_channels, mid_channels, num_reconstruction_blocks)
        self.upsample1 = PixelShufflePack(mid_channels, mid_channels, 2, upsample_kernel=3)
        self.upsample2 = PixelShufflePack(mid_channels, mid_channels, 2, upsample_kernel=3)
        if not only_last:
            self.conv_hr = nn.Conv2D(mid_channels, mid_channels, 3, 1, 1)
        self.conv_last = nn.Conv2D(mid_channels, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1)

        self.aux_fusion = nn.Conv2D(mid_channels * 2, mid_channels, 3, 1, 1)
        self.aux_reconstruction = ResidualBlocksWithInputConv(4 * mid_channels, mid_channels,
                                                              aux_reconstruction_blocks)
        self.aux_block_down1 = nn.Sequential(
            nn.Conv2D(3 + mid_channels, mid_channels, 3, 2, 1),
            nn.LeakyReLU(negative_slope=0.1),
            nn.Conv2D(mid_channels, mid_channels, 3, 1, 1),
        )
        self.aux_block_down2 = nn.Sequential(
            nn.Conv2D(mid_channels * 2, mid_channels, 3, 2, 1),
            nn.LeakyReLU(negative_slope=0.1),
            nn.Conv2D(mid_channels, mid_channels, 3, 1, 1),
        )
        self.aux_conv_last = nn.Conv2D(mid_channels, 3, 3, 1, 1)
        # also the local-connect head of the main output
        self.aux_upsample1 = PixelShufflePack(mid_channels, mid_channels, 2, upsample_kernel=3)
        self.aux_upsample2 = PixelShufflePack(mid_channels, mid_channels, 2, upsample_kernel=3)
        self.hybrid_conv_last = nn.Conv2D(mid_channels, 3, 3, 1, 1)

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _img_upsample(x: paddle.Tensor) -> paddle.Tensor:
        return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)

    def _is_mirror_extended(self, lqs: paddle.Tensor) -> bool:
        """True if t is even and frame i equals frame t-1-i for every i (exact comparison)."""
        if not self.check_mirror or not paddle.in_dynamic_mode() or lqs.shape[1] % 2 != 0:
            return False
        with paddle.no_grad():
            first, second = paddle.chunk(lqs, 2, axis=1)
            return bool(paddle.equal_all(first, paddle.flip(second, [1])))

    def compute_flow(self, lqs: paddle.Tensor) -> tuple[list[paddle.Tensor], list[paddle.Tensor]]:
        """Flows between neighbours of ``lqs`` (n, t, 3, h, w): two lists of t-1 ``(n, 2, h, w)``.

        ``backward[i] = spynet(frame_i, frame_i+1)``, ``forward[i] = spynet(frame_i+1, frame_i)``.
        """
        n, t, c, h, w = lqs.shape
        if t < 2:
            return [], []
        lrs_1 = lqs[:, :-1].reshape([-1, c, h, w])
        lrs_2 = lqs[:, 1:].reshape([-1, c, h, w])
        backward = self.spynet(lrs_1, lrs_2).reshape([-1, t - 1, 2, h, w])
        if self._is_mirror_extended(lqs):
            forward = backward.flip(1)
        else:
            forward = self.spynet(lrs_2, lrs_1).reshape([-1, t - 1, 2, h, w])
        return [backward[:, i] for i in range(t - 1)], [forward[:, i] for i in range(t - 1)]

    @staticmethod
    def _cond(feat_prop: paddle.Tensor, feat_current: paddle.Tensor, flow: paddle.Tensor) -> paddle.Tensor:
        """Offset-head input: the flow-warped neighbour next to the current feature."""
        return paddle.concat([flow_warp(feat_prop, flow.transpose([0, 2, 3, 1])), feat_current], axis=1)

    # The steps below are the per-frame pieces between deformable convolutions. They are methods
    # of their own so that ``engine_segments`` can run each as one compiled program.

    def _aligner(self, name: str) -> AlignmentModule | ReAlignmentModule:
        return self.stage1_align if name == "stage1" else self.deform_align[name]

    def _align_offsets(self, name: str, feat_prop: paddle.Tensor, feat_current: paddle.Tensor,
                       flow: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        """Stage 1/2: the (offset, mask) aligning ``feat_prop`` to ``feat_current`` along ``flow``."""
        return self._aligner(name).offsets(self._cond(feat_prop, feat_current, flow), flow)

    def _realign_offsets(self, name: str, pre_feat: paddle.Tensor, feat_current: paddle.Tensor, flow: paddle.Tensor,
                         pre_offset: paddle.Tensor, pre_mask: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        """Stage 3: the (offset, mask) refined from stage 2's pair."""
        return self.deform_align[name].offsets(pre_feat, feat_current, flow, pre_offset, pre_mask)

    def _fuse(self, name: str, feats: list[paddle.Tensor]) -> paddle.Tensor:
        """Stage 2/3: the propagated feature (last of ``feats``) plus the branch's residual."""
        return feats[-1] + self.backbone[name](paddle.concat(feats, axis=1))

    def _fuse_stage1(self, feats: list[paddle.Tensor]) -> paddle.Tensor:
        return self.stage1_blocks(paddle.concat(feats, axis=1))

    # the same two steps as ``engine_segments`` compiles them (see ``ResidualBlocksWithInputConv.of_parts``)
    def _fuse_of_parts(self, name: str, feats: list[paddle.Tensor]) -> paddle.Tensor:
        return feats[-1] + self.backbone[name].of_parts(feats)

    def _fuse_stage1_of_parts(self, feats: list[paddle.Tensor]) -> paddle.Tensor:
        return self.stage1_blocks.of_parts(feats)

    def _align(self, name: str, feat_prop: paddle.Tensor, feat_current: paddle.Tensor,
               flow: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
        """Stage 1/2 alignment (``AlignmentModule.forward``): (aligned feature, offset, mask)."""
        offset, mask = self._align_offsets(name, feat_prop, feat_current, flow)
        return self._aligner(name).dcn(feat_prop, offset, mask), offset, mask

    def _realign(self, name: str, feat_prop: paddle.Tensor, flow: paddle.Tensor, feat_current: paddle.Tensor,
                 pre_offset: paddle.Tensor, pre_mask: paddle.Tensor) -> paddle.Tensor:
        """Stage 3 alignment (``ReAlignmentModule.forward``)."""
        align = self.deform_align[name]
        pre_feat = align.mdconv(feat_prop, pre_offset, pre_mask)
        offset, mask = self._realign_offsets(name, pre_feat, feat_current, flow, pre_offset, pre_mask)
        return align.dcn(feat_prop, offset, mask)

    # ---------------------------------------------------------------- stages

    def stage1(self, spatial: list[paddle.Tensor], flows_backward: list[paddle.Tensor],
               flows_forward: list[paddle.Tensor]) -> list[paddle.Tensor]:
        """Local fusion: each frame with its aligned right and left neighbours (zeros at the ends)."""
        t = len(spatial)
        out: list[paddle.Tensor] = [None] * t  # type: ignore[list-item]
        for idx in range(t - 1, -1, -1):
            feat_current = spatial[idx]
            if idx < t - 1:
                feat_next, _, _ = self._align("stage1", spatial[idx + 1], feat_current, flows_backward[idx])
            else:
                feat_next = paddle.zeros_like(feat_current)
            if idx > 0:
                feat_prev, _, _ = self._align("stage1", spatial[idx - 1], feat_current, flows_forward[idx - 1])
            else:
                feat_prev = paddle.zeros_like(feat_current)
            out[idx] = self._fuse_stage1([feat_current, feat_next, feat_prev])
        return out

    def _propagate(self, name: str, currents: list[paddle.Tensor], earlier: list[list[paddle.Tensor]],
                   flows: list[paddle.Tensor], backward: bool,
                   pre: Callable[[int], tuple] | None = None) -> tuple[list[paddle.Tensor], list | None]:
        """One recurrent branch over the frames (last to first if ``backward``).

        ``earlier``: per-frame features of the branches before this one, concatenated in this order
        between the current feature and the propagated one. Stage 2 (``pre=None``) returns the
        per-frame (offset, mask) it used if ``keep_offsets``, else None; stage 3 re-aligns starting
        from ``pre(idx)``, stage 2's pair for frame ``idx``.
        """
        t = len(currents)
        order = range(t - 1, -1, -1) if backward else range(t)
        out: list[paddle.Tensor] = [None] * t  # type: ignore[list-item]
        used: list | None = [None] * t if pre is None and self.keep_offsets else None
        feat_prop = paddle.zeros_like(currents[order[0]])
        for step, idx in enumerate(order):
            feat_current = currents[idx]
            if step > 0:
                flow = flows[idx] if backward else flows[idx - 1]
                if pre is None:
                    feat_prop, offset, mask = self._align(name, feat_prop, feat_current, flow)
                    if used is not None:
                        used[idx] = (offset, mask)
                else:
                    feat_prop = self._realign(name, feat_prop, flow, feat_current, *pre(idx))
            feat_prop = self._fuse(name, [feat_current] + [f[idx] for f in earlier] + [feat_prop])
            out[idx] = feat_prop
        return out, used

    def _stage2_pairs(self, name: str, kept: list | None, spatial: list[paddle.Tensor],
                      stage2: list[paddle.Tensor], flows: list[paddle.Tensor],
                      backward: bool) -> Callable[[int], tuple]:
        """Stage 2's (offset, mask) of frame ``idx``: kept, or recomputed as stage 2 computed it.

        Stage 2 aligned the feature it propagated into frame ``idx`` (its output at the previous
        frame of its order) with the current spatial feature and the flow; all three are kept.
        """
        if kept is not None:
            return kept.__getitem__

        def pair(idx: int) -> tuple:
            flow = flows[idx] if backward else flows[idx - 1]
            feat_prop = stage2[idx + 1] if backward else stage2[idx - 1]
            return self._align_offsets(name, feat_prop, spatial[idx], flow)

        return pair

    def auxiliary_stage(self, lqs: paddle.Tensor, spatial: list[paddle.Tensor], stage1: list[paddle.Tensor],
                        s2b: list[paddle.Tensor], s2f: list[paddle.Tensor], moved: nn.LayerDict | None = None):
        """Auxiliary x4 reconstruction after stage 2 and its features for stage 3.

        Returns (images or None, features): ``(n, 3, 4h, 4w)`` per frame (kept only when
        ``return_aux``) and ``(n, c, h, w)`` per frame. ``moved``: from :meth:`moved_aux`, for a
        compiled program (the same maths, summed in another order): the convolutions that read
        the C-channel x4 features run on them unshuffled, so that tensor is never made, and the
        input convolution runs one per branch (``ResidualBlocksWithInputConv.of_parts``).
        """
        images, feats = [], []
        for i in range(len(spatial)):
            parts = [spatial[i], stage1[i], s2b[i], s2f[i]]
            if moved is None:
                hr_low = self.aux_reconstruction(paddle.concat(parts, axis=1))
            else:
                hr_low = self.aux_reconstruction.of_parts(parts)
            hr_mid = self.aux_upsample1(hr_low, self.lrelu)
            if moved is None:
                hr_high = self.aux_upsample2(hr_mid, self.lrelu)
                hr = self.aux_conv_last(hr_high) + self._img_upsample(lqs[:, i])
                aux_feat = self.aux_block_down1(paddle.concat([hr, hr_high], axis=1))
            else:
                high = self.lrelu(self.aux_upsample2.upsample_conv(hr_mid))  # hr_high before its shuffle
                hr = self.aux_upsample2.pixel_shuffle(moved["aux_conv_last"](high)) + self._img_upsample(lqs[:, i])
                aux_feat = moved["aux_block_down1"](hr, high)
                for layer in self.aux_block_down1[1:]:
                    aux_feat = layer(aux_feat)
            if self.return_aux:
                images.append(hr)
            aux_feat = self.aux_block_down2(paddle.concat([aux_feat, hr_mid], axis=1))
            feats.append(self.aux_fusion(paddle.concat([aux_feat, hr_low], axis=1)))
        return (images if self.return_aux else None), feats

    def moved_aux(self) -> nn.LayerDict:
        """The convolutions of ``auxiliary_stage`` that read its x4 features, moved before their
        pixel shuffle, for ``auxiliary_stage(..., moved=...)`` in a compiled program."""
        return nn.LayerDict({"aux_conv_last": ConvBeforeShuffle(self.aux_conv_last),
                             "aux_block_down1": StridedConvOfShuffled(self.aux_block_down1[0], 3)})

    def _x4_tail(self, pack: PixelShufflePack, conv: nn.Conv2D, x: paddle.Tensor,
                 moved: dict[str, "ConvBeforeShuffle"] | None, name: str) -> paddle.Tensor:
        """``conv(lrelu(pack(x)))``: x2 features to an x4 image; with ``moved[name]``, ``conv`` runs
        before the shuffle (:class:`ConvBeforeShuffle`)."""
        if moved is None:
            return conv(pack(x, self.lrelu))
        return pack.pixel_shuffle(moved[name](self.lrelu(pack.upsample_conv(x))))

    def moved_tails(self) -> nn.LayerDict:
        """The convolutions of ``upsample``'s x4 tails moved before their pixel shuffles, for
        ``upsample(..., moved=...)`` in a compiled program (see :class:`ConvBeforeShuffle`)."""
        tails = nn.LayerDict()
        if self.only_last:  # PP-MSVSR-L's conv_hr runs at 4x first: its conv_last stays
            tails["conv_last"] = ConvBeforeShuffle(self.conv_last)
        if self.use_local_connnect:
            tails["hybrid_conv_last"] = ConvBeforeShuffle(self.hybrid_conv_last)
        return tails

    def upsample(self, lqs: paddle.Tensor, branches: list[list[paddle.Tensor]],
                 moved: nn.LayerDict | None = None) -> paddle.Tensor:
        """Final x4 reconstruction; ``branches`` = [spatial, stage1, s2b, s2f, s3b, s3f].

        ``moved``: from :meth:`moved_tails`, for a compiled program (the same maths, summed in
        another order): the tails' convolutions before their shuffles, and the input convolution
        one per branch (``ResidualBlocksWithInputConv.of_parts``).
        """
        outputs = []
        for i in range(lqs.shape[1]):
            parts = [b[i] for b in branches]
            if moved is None:
                hr = self.reconstruction(paddle.concat(parts, axis=1))
            else:
                hr = self.reconstruction.of_parts(parts)
            hr = self.upsample1(hr, self.lrelu)
            if self.only_last:
                hr = self._x4_tail(self.upsample2, self.conv_last, hr, moved, "conv_last")
            else:
                hr = self.conv_last(self.lrelu(self.conv_hr(self.upsample2(hr, self.lrelu))))
            hr = hr + self._img_upsample(lqs[:, i])
            if self.use_local_connnect:
                local = self.aux_upsample1(branches[1][i], self.lrelu)
                hr = self._x4_tail(self.aux_upsample2, self.hybrid_conv_last, local, moved, "hybrid_conv_last") + hr
            outputs.append(hr)
        return paddle.stack(outputs, axis=1)

    # ---------------------------------------------------------------- engine plan

    def engine_segments(self, plain: "MSVSR", segment) -> list[str]:
        """Engine hook: the stages to run as compiled programs, with the eager glue between them.

        ``segment(path, layer, scale)`` returns a callable running ``layer(*inputs)`` as one
        program per input shapes: with ``scale`` an integer, in row strips (per-frame layers of
        bounded reach whose output has ``scale`` times the rows; one output); with ``scale=None``,
        whole (any number of outputs). ``plain`` is an unsegmented copy whose layers the programs
        hold. This instance's step methods are replaced (only for this engine's private copy);
        returns the segments' names.

        * The two per-frame x4 stages (``auxiliary_stage``, ``upsample``), in strips: tensors of
          118 MB per frame at 180x320; as layer segments their LeakyReLUs, concatenations and skip
          additions would run eagerly on one thread and every 4x tensor would be copied in and out
          of a program. Not when the auxiliary images are wanted (``return_aux``).
        * Every step between two deformable convolutions, whole: the offset heads with the flow
          warp before them and the tanh/sigmoid/flow terms after them (``_align_offsets``,
          ``_realign_offsets``), and the branch fusions with their concatenation and residual
          addition (``_fuse``, ``_fuse_stage1``). Eagerly these small operations took a sixth of a
          window's time on one thread (measured at 180x320); in a program they are fused and
          threaded. The deformable convolutions stay with the engine.
        """
        names: list[str] = []

        def whole(path: str, layer: nn.Layer):
            names.append(path)
            return segment(path, layer, None)

        aligns = {"stage1": whole("step.align_stage1", _Step(MSVSR._align_offsets, plain, "stage1"))}
        realigns, fuses = {}, {}
        for name in self.deform_align.keys():
            if isinstance(self.deform_align[name], ReAlignmentModule):
                realigns[name] = whole(f"step.realign_{name}", _Step(MSVSR._realign_offsets, plain, name))
            else:
                aligns[name] = whole(f"step.align_{name}", _Step(MSVSR._align_offsets, plain, name))
            fuses[name] = whole(f"step.fuse_{name}", _Step(MSVSR._fuse_of_parts, plain, name, packed=True))
        fuse1 = whole("step.fuse_stage1", _Step(MSVSR._fuse_stage1_of_parts, plain, packed=True))

        # instance attributes shadow the methods of this copy only
        steps = {
            "_align_offsets": lambda name, *inputs: aligns[name](*inputs),
            "_realign_offsets": lambda name, *inputs: realigns[name](*inputs),
            "_fuse": lambda name, feats: fuses[name](*feats),
            "_fuse_stage1": lambda feats: fuse1(*feats),
        }
        if not self.return_aux:
            class AuxFrame(nn.Layer):
                def __init__(self, inner: "MSVSR") -> None:
                    super().__init__()
                    self.inner = inner
                    self.moved = inner.moved_aux()

                def forward(self, lq, spatial, stage1, s2b, s2f):
                    return self.inner.auxiliary_stage(lq, [spatial], [stage1], [s2b], [s2f], self.moved)[1][0]

            class UpsampleFrame(nn.Layer):
                def __init__(self, inner: "MSVSR") -> None:
                    super().__init__()
                    self.inner = inner
                    self.moved = inner.moved_tails()

                def forward(self, lq, spatial, stage1, s2b, s2f, s3b, s3f):
                    return self.inner.upsample(lq, [[spatial], [stage1], [s2b], [s2f], [s3b], [s3f]], self.moved)

            aux = segment("frame.auxiliary_stage", AuxFrame(plain), 1)
            up = segment("frame.upsample", UpsampleFrame(plain), 4)
            names += ["frame.auxiliary_stage", "frame.upsample"]

            def auxiliary_stage(lqs, spatial, stage1, s2b, s2f):
                return None, [aux(lqs[:, i:i + 1], spatial[i], stage1[i], s2b[i], s2f[i])
                              for i in range(len(spatial))]

            def upsample(lqs, branches):
                return paddle.concat([up(lqs[:, i:i + 1], *[b[i] for b in branches])
                                      for i in range(lqs.shape[1])], axis=1)

            steps.update(auxiliary_stage=auxiliary_stage, upsample=upsample)
        for attr, fn in steps.items():
            object.__setattr__(self, attr, fn)
        return names

    # ---------------------------------------------------------------- forward

    def forward(self, lqs: paddle.Tensor):
        """Super-resolve ``lqs`` (n, t, 3, h, w), RGB in [0, 1], h and w >= 64, any t >= 1.

        Returns ``(aux, out)``, both (n, t, 3, 4h, 4w), or only ``out`` if ``return_aux`` is False.
        ``out`` is the result; ``aux`` is the auxiliary stage-2 reconstruction.
        """
        if len(lqs.shape) != 5 or lqs.shape[2] != 3:
            raise ValueError(f"vsmsvsr.models.MSVSR: input must be (n, t, 3, h, w), got shape {list(lqs.shape)}")
        n, t, c, h, w = lqs.shape
        if 0 <= h < _MIN_SIZE or 0 <= w < _MIN_SIZE:
            raise ValueError(f"vsmsvsr.models.MSVSR: frames must be at least {_MIN_SIZE}x{_MIN_SIZE} "
                             f"(h x w), got {h}x{w}")

        # feature extraction, all frames at once
        feats = self.feat_extract(lqs.reshape([-1, c, h, w])).reshape([-1, t, self.mid_channels, h, w])
        spatial = [feats[:, i] for i in range(t)]

        # optical flow between neighbours, on the low-resolution input
        flows_backward, flows_forward = self.compute_flow(lqs)

        # stage 1: local fusion
        stage1 = self.stage1(spatial, flows_backward, flows_forward)

        # stage 2: bidirectional propagation (its offsets and masks kept only if keep_offsets)
        s2b, pre_b = self._propagate("stage2_backward", spatial, [stage1], flows_backward, backward=True)
        s2f, pre_f = self._propagate("stage2_forward", spatial, [stage1, s2b], flows_forward, backward=False)

        # auxiliary reconstruction; its features replace the spatial ones in stage 3
        aux_images, aux_feats = self.auxiliary_stage(lqs, spatial, stage1, s2b, s2f)

        # stage 3: bidirectional propagation, re-aligning from stage 2's offsets/masks (kept or recomputed)
        pre_b = self._stage2_pairs("stage2_backward", pre_b, spatial, s2b, flows_backward, backward=True)
        pre_f = self._stage2_pairs("stage2_forward", pre_f, spatial, s2f, flows_forward, backward=False)
        s3b, _ = self._propagate("stage3_backward", aux_feats, [stage1, s2b, s2f], flows_backward,
                                 backward=True, pre=pre_b)
        s3f, _ = self._propagate("stage3_forward", aux_feats, [stage1, s2b, s2f, s3b], flows_forward,
                                 backward=False, pre=pre_f)

        # reconstruction
        out = self.upsample(lqs, [spatial, stage1, s2b, s2f, s3b, s3f])
        if self.return_aux:
            return paddle.stack(aux_images, axis=1), out
        return out
