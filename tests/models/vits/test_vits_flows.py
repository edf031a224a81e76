"""Invertibility of the flows: the residual coupling flow, the spline, the duration predictor's flows."""

from __future__ import annotations

import torch
from torch import nn

from dvcli.models.vits.duration import ElementwiseAffine, LogFlow, SplineCoupling, StochasticDurationPredictor
from dvcli.models.vits.flow import ResidualCouplingFlow
from dvcli.models.vits.splines import rational_quadratic_spline


def randomise(module: nn.Module, std: float = 0.3) -> None:
    """Replace the zero initialisations (which make couplings the identity) by random weights."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * std)


def test_residual_coupling_flow_inverts_exactly() -> None:
    flow = ResidualCouplingFlow(8, 16, kernel_size=5, dilation_rate=1, n_layers=2, n_couplings=4, gin_channels=6)
    randomise(flow, 0.2)
    x = torch.randn(3, 8, 20)
    mask = (torch.arange(20)[None] < torch.tensor([20, 13, 5])[:, None]).float().unsqueeze(1)
    g = torch.randn(3, 6, 1)
    x = x * mask
    z = flow(x, mask, g)
    assert (z - x).abs().max() > 0.1  # the flow is not the identity
    torch.testing.assert_close(flow(z, mask, g, reverse=True), x, atol=1e-5, rtol=0)


def test_spline_inverts_and_logdet_is_the_derivative() -> None:
    torch.manual_seed(0)
    x = torch.linspace(-7, 7, 301, dtype=torch.float64)  # inside and outside the [-5, 5] interval
    widths, heights, derivs = (torch.randn(301, n, dtype=torch.float64) for n in (10, 10, 9))
    y, logdet = rational_quadratic_spline(x, widths, heights, derivs)
    back, logdet_inv = rational_quadratic_spline(y, widths, heights, derivs, inverse=True)
    torch.testing.assert_close(back, x, atol=1e-9, rtol=0)
    torch.testing.assert_close(logdet_inv, -logdet)
    outside = x.abs() > 5
    assert torch.equal(y[outside], x[outside]) and torch.all(logdet[outside] == 0)
    # log |dy/dx| against autograd, elementwise (each x has its own spline parameters)
    xg = x.clone().requires_grad_(True)
    yg, _ = rational_quadratic_spline(xg, widths, heights, derivs)
    (grad,) = torch.autograd.grad(yg.sum(), xg)
    torch.testing.assert_close(torch.log(grad)[~outside], logdet[~outside])


def test_duration_flow_layers_invert() -> None:
    mask = torch.ones(2, 1, 11)
    g = torch.randn(2, 16, 11)
    for flow in (ElementwiseAffine(2), SplineCoupling(16, 3, n_layers=2)):
        randomise(flow)
        x = torch.randn(2, 2, 11)
        y, _ = flow(x, mask, g)
        assert (y - x).abs().max() > 0.05
        back, _ = flow(y, mask, g, reverse=True)
        torch.testing.assert_close(back, x, atol=1e-5, rtol=0)
    x = torch.rand(2, 1, 11) + 0.5
    y, _ = LogFlow()(x, mask)
    torch.testing.assert_close(LogFlow()(y, mask, reverse=True)[0], x)


def test_stochastic_duration_sampling_inverts_the_training_flow() -> None:
    """Sampling runs the main flow backwards without its first coupling; the log-duration channel must
    still come back exactly, because that coupling only transforms the discarded channel."""
    sdp = StochasticDurationPredictor(12, 16, 3, dropout=0.0, n_flows=3, gin_channels=0).eval()
    randomise(sdp, 0.2)
    mask = torch.ones(2, 1, 9)
    cond = torch.randn(2, 16, 9)
    z_in = torch.randn(2, 2, 9)
    z = z_in
    for flow in sdp.flows:
        z, _ = flow(z, mask, cond)
    back = z
    for flow in sdp.reverse_flows():
        back, _ = flow(back, mask, cond, reverse=True)
    torch.testing.assert_close(back[:, :1], z_in[:, :1], atol=1e-5, rtol=0)
    assert (back[:, 1:] - z_in[:, 1:]).abs().max() > 1e-3  # the skipped coupling did change channel 1


def test_stochastic_duration_nll_is_finite_and_trains() -> None:
    torch.manual_seed(0)
    sdp = StochasticDurationPredictor(12, 16, 3, dropout=0.0, n_flows=2, gin_channels=4)
    h, g = torch.randn(2, 12, 9), torch.randn(2, 4, 1)
    mask = torch.ones(2, 1, 9)
    durations = torch.randint(1, 8, (2, 1, 9)).float()
    optim = torch.optim.Adam(sdp.parameters(), lr=1e-2)
    losses = []
    for step in range(30):
        loss = sdp.nll(h, mask, durations, g, rng=torch.Generator().manual_seed(step)).sum() / 18
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
    logw = sdp.log_durations(h, mask, g, noise_scale=0.0)
    assert logw.shape == (2, 1, 9)
