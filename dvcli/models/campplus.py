"""CAM++ speaker encoder (Wang et al., 2023), with 3D-Speaker's module names and tensor shapes.

The published ``campplus_*.bin`` state dicts of 3D-Speaker load into :class:`CAMPPlus` with
``strict=True``: the submodule names below (``head.layer1.0.conv1``, ``xvector.block2.tdnnd7.
cam_layer.linear_local``, ``xvector.dense.nonlinear.batchnorm``...) are the checkpoint's keys, and
the default configuration gives its parameter counts (6,848,544 at embedding 192, 7,176,224 at 512).

Layout, input ``(B, T, 80)`` log-mel fbank:

    head     FCM: a small 2-D ResNet over (frequency, time); frequency /8, channels -> 320
    xvector  tdnn (kernel 5, stride 2: time /2)
             block1..3: densely connected TDNN layers with context-aware masking (CAM)
             transit1..3: BN-ReLU-1x1 conv halving the channels after each block
             out_nonlinear, stats (mean + std over time), dense (1x1 conv + non-affine BN)

Smaller configurations (``CAMPPlusConfig.tiny()``) keep this structure with fewer and narrower
layers, for CPU demos and tests.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as activation_checkpoint
from torch import nn


@dataclasses.dataclass(kw_only=True)
class CAMPPlusConfig:
    """Sizes of a CAM++ encoder; the defaults are 3D-Speaker's ``CAMPPlus(embedding_size=192)``."""

    feat_dim: int = 80  # fbank bins of the input
    embedding_size: int = 192  # output embedding dimension (3D-Speaker ships 192 and 512)
    head_channels: int = 32  # channels of the 2-D FCM head ("m_channels")
    init_channels: int = 128  # channels out of the first TDNN layer
    growth_rate: int = 32  # channels each CAM layer adds to its block
    bn_size: int = 4  # bottleneck width of a CAM layer, in multiples of growth_rate
    kernel_size: int = 3  # time kernel of the CAM layers' local convolution
    block_layers: tuple[int, ...] = (12, 24, 16)  # CAM layers per D-TDNN block
    block_dilations: tuple[int, ...] = (1, 2, 2)  # time dilation per block
    segment_frames: int = 100  # CAM segment-pooling length (frames after the stride-2 TDNN)
    memory_efficient: bool = False  # recompute bottleneck activations in backward (saves memory, costs time)

    def __post_init__(self) -> None:
        self.block_layers = tuple(self.block_layers)
        self.block_dilations = tuple(self.block_dilations)
        if len(self.block_layers) != len(self.block_dilations):
            raise ValueError("block_layers and block_dilations need one entry per block")
        if self.feat_dim % 8:
            raise ValueError("feat_dim must be a multiple of 8 (the FCM head divides frequency by 8)")

    @classmethod
    def tiny(cls, embedding_size: int = 192) -> CAMPPlusConfig:
        """A ~0.2M-parameter CAM++ for CPU demos and tests (same structure, fewer/narrower layers)."""
        return cls(
            embedding_size=embedding_size,
            head_channels=8,
            init_channels=64,
            growth_rate=16,
            bn_size=2,
            block_layers=(2, 3, 2),
        )


#: Named configurations selectable with ``--set model=NAME``.
PRESETS = {"campplus": CAMPPlusConfig, "tiny": CAMPPlusConfig.tiny}


def bn_relu(channels: int) -> nn.Sequential:
    """3D-Speaker's ``get_nonlinear('batchnorm-relu')``: children named ``batchnorm`` and ``relu``."""
    return nn.Sequential(OrderedDict(batchnorm=nn.BatchNorm1d(channels), relu=nn.ReLU(inplace=True)))


# -- FCM head -------------------------------------------------------------------------------------


class BasicResBlock(nn.Module):
    """2-D residual block; ``stride`` applies to frequency only (time resolution is kept)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=(stride, 1), bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, F, T) -> (B, C, F / stride, T)``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class FCM(nn.Module):
    """Front-end convolution module: 2-D convolutions that see local time-frequency patterns."""

    def __init__(self, feat_dim: int = 80, channels: int = 32, blocks: tuple[int, int] = (2, 2)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(*[BasicResBlock(channels, channels, 2 if i == 0 else 1) for i in range(blocks[0])])
        self.layer2 = nn.Sequential(*[BasicResBlock(channels, channels, 2 if i == 0 else 1) for i in range(blocks[1])])
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (feat_dim // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, F, T) -> (B, C * F / 8, T)``."""
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))  # (B, C, F, T)
        out = self.layer2(self.layer1(out))  # (B, C, F/4, T)
        out = F.relu(self.bn2(self.conv2(out)))  # (B, C, F/8, T)
        return out.flatten(1, 2)  # (B, C * F/8, T)


# -- D-TDNN with context-aware masking ------------------------------------------------------------


class TDNNLayer(nn.Module):
    """Conv1d then BN-ReLU, "same" padding."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1
    ) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        self.linear = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False
        )
        self.nonlinear = bn_relu(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, T) -> (B, C_out, T / stride)``."""
        return self.nonlinear(self.linear(x))


class CAMLayer(nn.Module):
    """A TDNN output gated by a mask predicted from utterance-level + segment-level context.

    ``y = conv(x) * sigmoid(W2 relu(W1 (mean_T(x) + segment_mean(x))))``, the segment mean taken
    over fixed windows of ``segment_frames`` frames and broadcast back to every frame of its window.
    """

    def __init__(
        self,
        bn_channels: int,
        out_channels: int,
        kernel_size: int,
        dilation: int,
        segment_frames: int = 100,
        reduction: int = 2,
    ) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        self.linear_local = nn.Conv1d(
            bn_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        )
        self.linear1 = nn.Conv1d(bn_channels, bn_channels // reduction, 1)
        self.linear2 = nn.Conv1d(bn_channels // reduction, out_channels, 1)
        self.segment_frames = segment_frames

    def segment_pooling(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over consecutive windows of ``segment_frames`` (last one partial), per frame: ``(B, C, T)``."""
        frames = x.shape[-1]
        seg = F.avg_pool1d(x, kernel_size=self.segment_frames, stride=self.segment_frames, ceil_mode=True)
        return seg.repeat_interleave(self.segment_frames, dim=-1)[..., :frames]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, bn_channels, T) -> (B, out_channels, T)``."""
        frames = x.shape[-1]
        local = self.linear_local(x)
        # The context is constant within a segment and the mask network is frame-wise, so it runs
        # once per segment and is broadcast afterwards: the same values as running it on every
        # frame (segment_pooling), at 1/segment_frames of the cost.
        segments = F.avg_pool1d(x, kernel_size=self.segment_frames, stride=self.segment_frames, ceil_mode=True)
        context = x.mean(-1, keepdim=True) + segments  # (B, C, ceil(T / segment_frames))
        mask = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))
        return local * mask.repeat_interleave(self.segment_frames, dim=-1)[..., :frames]


class CAMDenseTDNNLayer(nn.Module):
    """BN-ReLU-1x1 bottleneck, BN-ReLU, CAM layer: adds ``growth_rate`` channels to its block."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bn_channels: int,
        kernel_size: int,
        dilation: int,
        segment_frames: int = 100,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        self.nonlinear1 = bn_relu(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = bn_relu(bn_channels)
        self.cam_layer = CAMLayer(bn_channels, out_channels, kernel_size, dilation, segment_frames)
        self.memory_efficient = memory_efficient

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear1(self.nonlinear1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, T) -> (B, growth_rate, T)``."""
        if self.training and self.memory_efficient and x.requires_grad:
            x = activation_checkpoint.checkpoint(self.bottleneck, x, use_reentrant=False)
        else:
            x = self.bottleneck(x)
        return self.cam_layer(self.nonlinear2(x))


class CAMDenseTDNNBlock(nn.Module):
    """Densely connected CAM layers ``tdnnd1..N``: each sees the block input and all earlier outputs."""

    def __init__(
        self,
        num_layers: int,
        in_channels: int,
        growth_rate: int,
        bn_channels: int,
        kernel_size: int,
        dilation: int,
        segment_frames: int = 100,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = CAMDenseTDNNLayer(
                in_channels + i * growth_rate,
                growth_rate,
                bn_channels,
                kernel_size,
                dilation,
                segment_frames,
                memory_efficient,
            )
            self.add_module(f"tdnnd{i + 1}", layer)
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, T) -> (B, C_in + num_layers * growth_rate, T)``."""
        for layer in self.children():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitLayer(nn.Module):
    """BN-ReLU then a 1x1 convolution (no bias) between D-TDNN blocks."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.nonlinear = bn_relu(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class StatsPool(nn.Module):
    """Mean and (unbiased) standard deviation over time: ``(B, C, T) -> (B, 2C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # dim=1, not -1: ONNX Runtime rejects the exported Concat with a negative axis here.
        return torch.cat([x.mean(dim=-1), x.std(dim=-1, unbiased=True)], dim=1)


class DenseLayer(nn.Module):
    """The embedding layer: a 1x1 convolution then a batch norm without affine parameters."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = nn.Sequential(OrderedDict(batchnorm=nn.BatchNorm1d(out_channels, affine=False)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in) -> (B, C_out)``."""
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


# -- the encoder ----------------------------------------------------------------------------------


class CAMPPlus(nn.Module):
    """CAM++: ``(B, T, feat_dim)`` fbank frames -> ``(B, embedding_size)`` speaker embeddings.

    Needs at least a few frames: the FCM head keeps time, the first TDNN halves it, and the
    standard deviation in the pooling needs two frames, so ``T >= 3``.
    """

    def __init__(self, config: CAMPPlusConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or CAMPPlusConfig()
        self.head = FCM(config.feat_dim, config.head_channels)
        channels = config.init_channels
        self.xvector = nn.Sequential(
            OrderedDict(tdnn=TDNNLayer(self.head.out_channels, channels, kernel_size=5, stride=2))
        )
        for i, (layers, dilation) in enumerate(zip(config.block_layers, config.block_dilations), start=1):
            block = CAMDenseTDNNBlock(
                layers,
                channels,
                config.growth_rate,
                config.bn_size * config.growth_rate,
                config.kernel_size,
                dilation,
                config.segment_frames,
                config.memory_efficient,
            )
            self.xvector.add_module(f"block{i}", block)
            self.xvector.add_module(f"transit{i}", TransitLayer(block.out_channels, block.out_channels // 2))
            channels = block.out_channels // 2
        self.xvector.add_module("out_nonlinear", bn_relu(channels))
        self.xvector.add_module("stats", StatsPool())
        self.xvector.add_module("dense", DenseLayer(channels * 2, config.embedding_size))
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def embedding_size(self) -> int:
        return self.config.embedding_size

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, T, feat_dim)`` mean-normalised fbank -> ``(B, embedding_size)``."""
        x = feats.transpose(1, 2)  # (B, F, T)
        return self.xvector(self.head(x))

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """Parameters of the embedding layer (what a "freeze all but the last layer" schedule trains)."""
        return list(self.xvector.dense.parameters())


def config_from_state_dict(state: Mapping[str, torch.Tensor]) -> CAMPPlusConfig:
    """Read a CAM++ configuration off a 3D-Speaker-layout state dict's tensor shapes.

    The dilations and the segment length leave no trace in the weights; the defaults (1, 2, 2) and
    100 are assumed (3D-Speaker never changes them).

    Raises:
        KeyError: the state dict is not a CAM++ one (a key the layout needs is missing).
    """
    head = state["head.conv1.weight"].shape[0]
    tdnn = state["xvector.tdnn.linear.weight"]
    local = state["xvector.block1.tdnnd1.cam_layer.linear_local.weight"]
    growth = local.shape[0]
    bottleneck = state["xvector.block1.tdnnd1.linear1.weight"].shape[0]
    layers = []
    block = 1
    while f"xvector.block{block}.tdnnd1.linear1.weight" in state:
        count = 0
        while f"xvector.block{block}.tdnnd{count + 1}.linear1.weight" in state:
            count += 1
        layers.append(count)
        block += 1
    defaults = CAMPPlusConfig()
    dilations = defaults.block_dilations if len(layers) == len(defaults.block_dilations) else (1,) * len(layers)
    return CAMPPlusConfig(
        feat_dim=tdnn.shape[1] // head * 8,
        embedding_size=state["xvector.dense.linear.weight"].shape[0],
        head_channels=head,
        init_channels=tdnn.shape[0],
        growth_rate=growth,
        bn_size=bottleneck // growth,
        kernel_size=local.shape[-1],
        block_layers=tuple(layers),
        block_dilations=dilations,
    )
