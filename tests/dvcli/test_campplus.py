"""CAM++ matches 3D-Speaker's published layout: parameter counts, key names and shapes, strict loads."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from dvcli.checkpoint import load_checkpoint
from dvcli.models.campplus import CAMLayer, CAMPPlus, CAMPPlusConfig, config_from_state_dict
from dvcli.speaker.encoder import export_onnx, load_speaker_encoder


def _bn(table: dict, prefix: str, channels: int, affine: bool = True) -> None:
    if affine:
        table[f"{prefix}.weight"] = (channels,)
        table[f"{prefix}.bias"] = (channels,)
    table[f"{prefix}.running_mean"] = (channels,)
    table[f"{prefix}.running_var"] = (channels,)
    table[f"{prefix}.num_batches_tracked"] = ()


def expected_layout(embedding: int = 192) -> dict[str, tuple[int, ...]]:
    """3D-Speaker's CAMPPlus state dict, written out from the architecture description.

    FCM head: conv 1->32, two stages of two residual blocks (the first of each strides frequency
    by 2 and has a 1x1 shortcut), a stride-(2,1) conv; 32 channels x 80/8 bins = 320. Then a
    kernel-5 TDNN to 128, D-TDNN blocks of 12/24/16 CAM layers (growth 32, bottleneck 128, kernel
    3, context MLP 128->64->32 with biases), transits halving channels without bias, an output
    BN-ReLU, mean+std pooling and a 1x1 dense layer with a non-affine batch norm.
    """
    t: dict[str, tuple[int, ...]] = {}
    t["head.conv1.weight"] = (32, 1, 3, 3)
    _bn(t, "head.bn1", 32)
    for stage in (1, 2):
        for block in (0, 1):
            p = f"head.layer{stage}.{block}"
            t[f"{p}.conv1.weight"] = (32, 32, 3, 3)
            _bn(t, f"{p}.bn1", 32)
            t[f"{p}.conv2.weight"] = (32, 32, 3, 3)
            _bn(t, f"{p}.bn2", 32)
            if block == 0:
                t[f"{p}.shortcut.0.weight"] = (32, 32, 1, 1)
                _bn(t, f"{p}.shortcut.1", 32)
    t["head.conv2.weight"] = (32, 32, 3, 3)
    _bn(t, "head.bn2", 32)
    t["xvector.tdnn.linear.weight"] = (128, 320, 5)
    _bn(t, "xvector.tdnn.nonlinear.batchnorm", 128)
    channels = 128
    for b, layers in enumerate((12, 24, 16), start=1):
        for i in range(layers):
            p = f"xvector.block{b}.tdnnd{i + 1}"
            _bn(t, f"{p}.nonlinear1.batchnorm", channels + 32 * i)
            t[f"{p}.linear1.weight"] = (128, channels + 32 * i, 1)
            _bn(t, f"{p}.nonlinear2.batchnorm", 128)
            t[f"{p}.cam_layer.linear_local.weight"] = (32, 128, 3)
            t[f"{p}.cam_layer.linear1.weight"] = (64, 128, 1)
            t[f"{p}.cam_layer.linear1.bias"] = (64,)
            t[f"{p}.cam_layer.linear2.weight"] = (32, 64, 1)
            t[f"{p}.cam_layer.linear2.bias"] = (32,)
        channels += 32 * layers
        _bn(t, f"xvector.transit{b}.nonlinear.batchnorm", channels)
        t[f"xvector.transit{b}.linear.weight"] = (channels // 2, channels, 1)
        channels //= 2
    _bn(t, "xvector.out_nonlinear.batchnorm", channels)
    t["xvector.dense.linear.weight"] = (embedding, channels * 2, 1)
    _bn(t, "xvector.dense.nonlinear.batchnorm", embedding, affine=False)
    return t


def _trainable(table: dict[str, tuple[int, ...]]) -> int:
    total = 0
    for key, shape in table.items():
        if key.endswith((".weight", ".bias")):
            total += int(torch.Size(shape).numel())
    return total


@pytest.mark.parametrize("embedding,count", [(192, 6_848_544), (512, 7_176_224)])
def test_parameter_count_and_layout_match_3d_speaker(embedding: int, count: int) -> None:
    model = CAMPPlus(CAMPPlusConfig(embedding_size=embedding))
    assert sum(p.numel() for p in model.parameters()) == count
    table = expected_layout(embedding)
    assert _trainable(table) == count  # the table alone reproduces the published count
    state = model.state_dict()
    assert list(state) == list(table)  # same keys, same order
    assert {k: tuple(v.shape) for k, v in state.items()} == table


def _random_state(table: dict[str, tuple[int, ...]]) -> OrderedDict:
    gen = torch.Generator().manual_seed(0)
    state = OrderedDict()
    for key, shape in table.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = 0.05 * torch.randn(shape, generator=gen)
    return state


@pytest.mark.parametrize("embedding", [192, 512])
def test_plain_bin_state_dict_loads_strictly_through_the_safe_loader(tmp_path: Path, embedding: int) -> None:
    state = _random_state(expected_layout(embedding))
    path = tmp_path / f"campplus_{embedding}.bin"
    torch.save(state, path)  # what 3D-Speaker publishes: a torch.save'd OrderedDict of tensors
    loaded = load_checkpoint(path)
    model = CAMPPlus(CAMPPlusConfig(embedding_size=embedding))
    model.load_state_dict(loaded, strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    # The dv entry point infers the architecture from the shapes.
    encoder = load_speaker_encoder(path)
    assert encoder.embedding_size == embedding and not encoder.training
    assert encoder.config == CAMPPlusConfig(embedding_size=embedding)
    torch.testing.assert_close(
        encoder.state_dict()["xvector.block2.tdnnd24.linear1.weight"], state["xvector.block2.tdnnd24.linear1.weight"]
    )


def test_config_from_state_dict_round_trips_small_configurations() -> None:
    config = CAMPPlusConfig(
        embedding_size=64, head_channels=8, init_channels=48, growth_rate=8, bn_size=2, block_layers=(1, 2, 3)
    )
    assert config_from_state_dict(CAMPPlus(config).state_dict()) == config
    assert config_from_state_dict(CAMPPlus(CAMPPlusConfig.tiny()).state_dict()) == CAMPPlusConfig.tiny()


def test_segment_pooling_matches_a_loop() -> None:
    layer = CAMLayer(bn_channels=8, out_channels=4, kernel_size=3, dilation=2, segment_frames=10)
    x = torch.randn(2, 8, 37)
    expected = torch.empty_like(x)
    for start in range(0, 37, 10):
        expected[..., start : start + 10] = x[..., start : start + 10].mean(-1, keepdim=True)
    torch.testing.assert_close(layer.segment_pooling(x), expected)


def test_cam_layer_is_a_masked_local_convolution() -> None:
    layer = CAMLayer(bn_channels=8, out_channels=4, kernel_size=3, dilation=1, segment_frames=5)
    x = torch.randn(1, 8, 12)
    context = x.mean(-1, keepdim=True) + layer.segment_pooling(x)
    mask = torch.sigmoid(layer.linear2(torch.relu(layer.linear1(context))))
    torch.testing.assert_close(layer(x), layer.linear_local(x) * mask)
    assert layer(x).shape == (1, 4, 12)


def test_forward_shapes_and_batch_independence_in_eval() -> None:
    model = CAMPPlus(CAMPPlusConfig.tiny(embedding_size=32)).eval()
    feats = torch.randn(3, 150, 80)
    with torch.no_grad():
        batch = model(feats)
        single = model(feats[1:2])
    assert batch.shape == (3, 32)
    torch.testing.assert_close(batch[1:2], single, atol=1e-5, rtol=1e-4)
    # Time resolution: the first TDNN strides by 2; 3 frames is the shortest input with a std.
    assert model(torch.randn(1, 3, 80)).shape == (1, 32)


def test_memory_efficient_mode_gives_the_same_gradients() -> None:
    torch.manual_seed(1)
    plain = CAMPPlus(CAMPPlusConfig.tiny())
    saving = CAMPPlus(CAMPPlusConfig(**{**plain.config.__dict__, "memory_efficient": True}))
    saving.load_state_dict(plain.state_dict())
    feats = torch.randn(2, 60, 80)
    for model in (plain, saving):
        model(feats).pow(2).sum().backward()
    for (name, a), b in zip(plain.named_parameters(), saving.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_exports_to_onnx_and_onnxruntime_agrees(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = CAMPPlus(CAMPPlusConfig.tiny()).eval()
    export_onnx(model, tmp_path / "campplus.onnx")
    session = ort.InferenceSession(str(tmp_path / "campplus.onnx"), providers=["CPUExecutionProvider"])
    for frames in (120, 257):  # 257: a partial last CAM segment
        feats = torch.randn(2, frames, 80)
        with torch.no_grad():
            expected = model(feats)
        torch.testing.assert_close(
            torch.from_numpy(session.run(None, {"feats": feats.numpy()})[0]), expected, atol=1e-4, rtol=1e-4
        )
