"""Monotonic rational-quadratic spline transform with linear tails (Durkan et al., 2019).

Used by the stochastic duration predictor's coupling flows. Inside ``[-bound, bound]`` the map is a
piecewise rational-quadratic with ``K`` bins whose widths, heights and inner knot derivatives are
given (unnormalised); outside it is the identity, and the boundary derivatives are fixed to 1 so the
two pieces join smoothly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _knots(unnormalised: torch.Tensor, bound: float, min_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin sizes (each >= ``min_size`` of the range) and their ``K + 1`` knot positions in ``[-bound, bound]``."""
    k = unnormalised.shape[-1]
    sizes = min_size + (1 - min_size * k) * torch.softmax(unnormalised, dim=-1)
    inner = 2 * bound * torch.cumsum(sizes, dim=-1)[..., :-1] - bound
    edge = torch.full_like(inner[..., :1], bound)
    knots = torch.cat([-edge, inner, edge], dim=-1)  # exact end points, whatever the rounding of cumsum
    return knots[..., 1:] - knots[..., :-1], knots


def rational_quadratic_spline(
    x: torch.Tensor,
    widths: torch.Tensor,
    heights: torch.Tensor,
    derivatives: torch.Tensor,
    *,
    inverse: bool = False,
    bound: float = 5.0,
    min_bin_width: float = 1e-3,
    min_bin_height: float = 1e-3,
    min_derivative: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the spline (or its inverse) elementwise.

    Args:
        x: ``(...)`` inputs.
        widths, heights: ``(..., K)`` unnormalised bin widths and heights.
        derivatives: ``(..., K - 1)`` unnormalised derivatives at the inner knots.
        inverse: run the inverse map.
        bound: half-width of the spline's interval; identity outside.

    Returns:
        ``y`` and ``log |dy/dx|`` of the map applied (of the inverse when ``inverse``), both ``(...)``.
    """
    inside = (x >= -bound) & (x <= bound)
    xc = torch.clamp(x, -bound, bound)  # compute the spline everywhere, then keep it only inside
    # Boundary derivatives are 1: softplus(c) + min_derivative = 1.
    boundary = math.log(math.expm1(1 - min_derivative))
    d = min_derivative + F.softplus(F.pad(derivatives, (1, 1), value=boundary))  # (..., K + 1)
    bin_w, knots_x = _knots(widths, bound, min_bin_width)
    bin_h, knots_y = _knots(heights, bound, min_bin_height)
    slope = bin_h / bin_w  # (..., K) secant slope per bin

    search = knots_y if inverse else knots_x
    # Bin index: last knot <= x (the top knot nudged up so x = bound falls in the last bin).
    search = torch.cat([search[..., :-1], search[..., -1:] + 1e-6], dim=-1)
    idx = (torch.sum(xc[..., None] >= search, dim=-1, keepdim=True) - 1).clamp(0, widths.shape[-1] - 1)

    def pick(t: torch.Tensor) -> torch.Tensor:
        return torch.gather(t, -1, idx)[..., 0]

    x0, y0, w, h, s = pick(knots_x), pick(knots_y), pick(bin_w), pick(bin_h), pick(slope)
    d0, d1 = pick(d[..., :-1]), pick(d[..., 1:])
    curve = d0 + d1 - 2 * s
    if inverse:
        # Solve the quadratic a*theta^2 + b*theta + c = 0 for theta in [0, 1] (stable root form).
        dy = xc - y0
        a = dy * curve + h * (s - d0)
        b = h * d0 - dy * curve
        c = -s * dy
        disc = torch.clamp(b.pow(2) - 4 * a * c, min=0.0)
        theta = (2 * c) / (-b - torch.sqrt(disc))
        y = theta * w + x0
    else:
        theta = (xc - x0) / w
        y = None
    t1t = theta * (1 - theta)
    denominator = s + curve * t1t
    if y is None:
        y = y0 + h * (s * theta.pow(2) + d0 * t1t) / denominator
    derivative = s.pow(2) * (d1 * theta.pow(2) + 2 * s * t1t + d0 * (1 - theta).pow(2)) / denominator.pow(2)
    logabsdet = torch.log(derivative)
    if inverse:
        logabsdet = -logabsdet
    return torch.where(inside, y, x), torch.where(inside, logabsdet, torch.zeros_like(logabsdet))
