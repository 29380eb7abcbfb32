"""Exportable forecast graphs: a fitted neuralforecast NHITS, a served baseline (naive, seasonal naive, window
mean, EWMA), or an ensemble of the two (:class:`EnsembleGraph`), as one small torch module
``windows (B, input_size) float32 -> forecast (B, h, n_outputs)`` in the original units.

Why not export neuralforecast's own module: its NHITS calls ``len(tensor)`` in the block basis and loops over
batch chunks in Python, which freezes the batch size when traced (see DESIGN.md, "Known pitfalls"). Here the same
computation is re-expressed with shape ops only, reusing the trained weights:

* the temporal scaler neuralforecast fits per window on its input part (identity, standard or robust: median
  and mean absolute deviation with its zero guards) is applied before and inverted after, inside the graph;
* the input is reversed (NHITS pools the time-reversed residuals), each block pools, runs its MLP, and its
  backcast is subtracted from the residuals; forecasts start at the last value (NHITS's "level") and add each
  block's linearly interpolated knots;
* ``fuse=True`` folds each block's first two Linear layers into one (there is no activation between them in
  NHITS: ``W2 (W1 x + b1) + b2 = (W2 W1) x + (W2 b1 + b2)``), folds the linear interpolation of the knots into
  the output layer (interpolation is a fixed linear map), and drops the last block's unused backcast rows.
  Equal outputs up to float rounding, about half the multiply-adds and a third of the graph's nodes.

Windows must be complete (no missing values): the service validates that before calling.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from domain.vocabulary import SERVED_BASELINES

SCALERS = ("identity", "standard", "robust")


def _lower_median(x: torch.Tensor) -> torch.Tensor:
    """Median along dim 1 (the lower middle value for an even count, like ``torch.nanmedian``), keepdim:
    the largest of the smaller half. An unsorted ONNX TopK (a selection, not a sort) plus a max."""
    k = (x.shape[1] - 1) // 2 + 1
    return torch.topk(x, k, dim=1, largest=False, sorted=False).values.amax(dim=1, keepdim=True)


class WindowScaler(nn.Module):
    """neuralforecast's temporal scaler on complete windows: ``shift``, ``scale`` per window (B, 1)."""

    def __init__(self, kind: str, eps: float = 1e-6) -> None:
        super().__init__()
        if kind not in SCALERS:
            raise ValueError(f"scaler_type {kind!r} cannot be served; supported: {list(SCALERS)}")
        self.kind, self.eps = kind, eps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "identity":
            return torch.zeros_like(x[:, :1]), torch.ones_like(x[:, :1])
        shift, scale = self._statistics(x.double())  # float64: see below
        return shift.to(x.dtype), scale.to(x.dtype)

    def _statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """In float64. The zero guards are a discontinuity: a near-constant window (a pegged currency: values a
        float32 ulp apart) has MAD 0 and a std of ~1e-8, which float32 reductions in torch give as > 0 (scale
        ~1e-6) and ONNX Runtime's as 0 (scale 1). In float64 both agree, as neuralforecast does on such windows."""
        mean = x.mean(dim=1, keepdim=True)
        std = torch.sqrt(((x - mean) ** 2).mean(dim=1, keepdim=True))
        if self.kind == "standard":
            return mean, torch.where(std == 0, torch.ones_like(std), std) + self.eps
        median = _lower_median(x)
        mad = _lower_median(torch.abs(x - median))
        mad = torch.where(mad > 0, mad, std * 0.6744897501960817)
        return median, torch.where(mad == 0, torch.ones_like(mad), mad) + self.eps


class Block(nn.Module):
    """One NHITS block: pool the (reversed) residuals and any exogenous inputs, MLP to theta = backcast + forecast.

    ``fused=False`` keeps NHITS's knots and interpolates them (``F.interpolate``); ``fused=True`` expects the
    interpolation already folded into the output layer (theta then holds the ``h * n_outputs`` forecast
    values directly). The forecast comes back flat, ``(B, h * n_outputs)`` in (step, output) order."""

    def __init__(self, pool: nn.Module, layers: nn.Sequential, backcast_size: int, n_outputs: int, h: int,
                 mode: str, fused: bool, n_hist: int = 0, n_futr: int = 0) -> None:
        super().__init__()
        self.pool, self.layers = pool, layers
        self.backcast_size, self.n_outputs, self.h, self.mode, self.fused = backcast_size, n_outputs, h, mode, fused
        self.n_hist, self.n_futr = n_hist, n_futr

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> pooled over time, flattened time-major as neuralforecast does: (B, T' * C)."""
        return self.pool(x.permute(0, 2, 1)).permute(0, 2, 1).reshape(x.shape[0], -1)

    def forward(self, residuals: torch.Tensor, hist: torch.Tensor | None = None,
                futr: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool(residuals.unsqueeze(1)).squeeze(1)
        if self.n_hist:
            x = torch.cat((x, self._pooled(hist)), dim=1)
        if self.n_futr:
            x = torch.cat((x, self._pooled(futr)), dim=1)
        theta = self.layers(x)
        backcast, knots = theta[:, :self.backcast_size], theta[:, self.backcast_size:]
        if self.fused:
            return backcast, knots
        knots = knots.reshape(theta.shape[0], self.n_outputs, -1)
        forecast = nn.functional.interpolate(knots, size=self.h, mode=self.mode).permute(0, 2, 1)
        return backcast, forecast.reshape(theta.shape[0], -1)


class ServingNHITS(nn.Module):
    """The forward pass of a fitted NHITS with its window scaler: ``(B, L) -> (B, h, n_outputs)``; with
    exogenous columns also ``hist_exog (B, L, n_hist)`` and ``futr_exog (B, L + h, n_futr)``, each column scaled
    like neuralforecast does (statistics of the window's input part)."""

    def __init__(self, blocks: list[Block], scaler: WindowScaler, h: int, input_size: int, n_outputs: int,
                 hist_exog: tuple[str, ...] = (), futr_exog: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.blocks, self.scaler = nn.ModuleList(blocks), scaler
        self.h, self.input_size, self.n_outputs = h, input_size, n_outputs
        self.hist_exog, self.futr_exog = tuple(hist_exog), tuple(futr_exog)

    def forward(self, windows: torch.Tensor, hist_exog: torch.Tensor | None = None,
                futr_exog: torch.Tensor | None = None) -> torch.Tensor:
        shift, scale = self.scaler(windows)
        y = (windows - shift) / scale
        hist = futr = None
        if self.hist_exog:
            h_shift, h_scale = self.scaler(hist_exog)
            hist = (hist_exog - h_shift) / h_scale
        if self.futr_exog:
            f_shift, f_scale = self.scaler(futr_exog[:, :self.input_size])
            futr = (futr_exog - f_shift) / f_scale
        residuals = torch.flip(y, dims=(1,))
        forecast = y[:, -1:]  # NHITS's level: the last value, for every step and output
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            backcast, block_forecast = block(residuals, hist, futr)
            if i < last:
                residuals = residuals - backcast
            forecast = forecast + block_forecast
        return (forecast * scale + shift).reshape(windows.shape[0], self.h, self.n_outputs)


def _interpolation_matrix(knots: int, h: int, mode: str) -> torch.Tensor:
    """``M`` (h, knots) with ``F.interpolate(k, size=h, mode) == k @ M.T`` (interpolation is linear in the knots)."""
    return nn.functional.interpolate(torch.eye(knots).unsqueeze(1), size=h, mode=mode)[:, 0, :].T


def _fused(layers: nn.Sequential, backcast_size: int, n_outputs: int, h: int, mode: str,
           keep_backcast: bool) -> nn.Sequential:
    """Fold the first two Linear layers (no activation between them), fold the knot interpolation into the
    output layer, and drop backcast rows nobody reads (the last block's)."""
    mods = [m for m in layers if not isinstance(m, nn.Dropout)]  # eval mode: dropout is the identity
    first, second, out = mods[0], mods[1], mods[-1]
    with torch.no_grad():
        merged = nn.Linear(first.in_features, second.out_features)
        merged.weight.copy_(second.weight @ first.weight)
        merged.bias.copy_(second.weight @ first.bias + second.bias)
        n_knots = (out.out_features - backcast_size) // n_outputs
        interp = _interpolation_matrix(n_knots, h, mode)  # (h, K)
        w_knots = out.weight[backcast_size:].reshape(n_outputs, n_knots, -1)  # (Q, K, hidden)
        b_knots = out.bias[backcast_size:].reshape(n_outputs, n_knots)
        w_fc = torch.einsum("tk,qkd->tqd", interp, w_knots).reshape(h * n_outputs, -1)
        b_fc = torch.einsum("tk,qk->tq", interp, b_knots).reshape(h * n_outputs)
        rows = backcast_size if keep_backcast else 0
        fused_out = nn.Linear(out.in_features, rows + h * n_outputs)
        fused_out.weight.copy_(torch.cat([out.weight[:rows], w_fc]))
        fused_out.bias.copy_(torch.cat([out.bias[:rows], b_fc]))
    return nn.Sequential(merged, *mods[2:-1], fused_out)


def from_nhits(model: Any, *, fuse: bool = True) -> ServingNHITS:
    """A :class:`ServingNHITS` from a fitted neuralforecast NHITS (weights copied; ``fuse`` as in :func:`_fused`)."""
    import copy

    if getattr(model, "stat_exog_size", 0) or getattr(model, "exclude_insample_y", False):
        raise ValueError("static exogenous features / exclude_insample_y cannot be served by this graph")
    if getattr(model.loss, "is_distribution_output", False):
        raise ValueError(f"loss {type(model.loss).__name__} outputs distribution parameters that are sampled at "
                         "predict time; serve a point (MAE/MSE/MASE) or quantile (MQLoss) model")
    scaler = WindowScaler(model.scaler.scaler_type, eps=float(model.scaler.eps))
    n_outputs, h = int(model.loss.outputsize_multiplier), int(model.h)
    blocks, last = [], len(model.blocks) - 1
    for i, block in enumerate(model.blocks):
        size, mode = block.basis.backcast_size, block.basis.interpolation_mode
        if mode not in ("linear", "nearest"):
            raise ValueError(f"interpolation_mode {mode!r} cannot be served; use 'linear' or 'nearest'")
        layers = copy.deepcopy(block.layers).eval()
        if fuse:
            layers = _fused(layers, size, n_outputs, h, mode, keep_backcast=i < last)
            size = size if i < last else 0
        blocks.append(Block(copy.deepcopy(block.pooling_layer), layers, size, n_outputs, h, mode, fused=fuse,
                            n_hist=block.hist_input_size, n_futr=block.futr_input_size))
    return ServingNHITS(blocks, scaler, h, int(model.input_size), n_outputs, tuple(model.hist_exog_list or ()),
                        tuple(model.futr_exog_list or ())).eval()


def ewma_weights(input_size: int, lam: float | None = None, init: int | None = None) -> torch.Tensor:
    """``w`` (input_size,) float64 with ``s_L = y^2 @ w``: the RiskMetrics recursion over a window ``y`` of length
    ``L`` (``models.volatility``: ``s_0`` = mean of the first ``min(init, L)`` squares, ``s_{t+1} = lam s_t +
    (1 - lam) y_t^2``) unrolled: ``w_j = (1 - lam) lam^(L-1-j) + lam^L / k`` for ``j < k = min(init, L)``, and
    ``(1 - lam) lam^(L-1-j)`` after."""
    from models.volatility import EWMA_INIT, EWMA_LAMBDA

    lam = EWMA_LAMBDA if lam is None else lam
    k = min(EWMA_INIT if init is None else init, input_size)
    j = torch.arange(input_size, dtype=torch.float64)
    w = (1.0 - lam) * lam ** (input_size - 1 - j)
    w[:k] += lam**input_size / k
    return w


class BaselineGraph(nn.Module):
    """naive / seasonal naive / window mean / EWMA (``SERVED_BASELINES``) as a graph of the same signature, so a
    baseline champion serves through the same runtime as NHITS (``(B, L) -> (B, h, 1)``). EWMA is one linear map
    of the squared window, ``sqrt(sum_j w_j y_j^2)`` (:func:`ewma_weights`), flat over ``h``: an elementwise
    product and a sum rather than a MatMul, so dynamic INT8 quantization (which quantizes MatMul weights) leaves
    it in float32 inside an ensemble."""

    def __init__(self, name: str, h: int, input_size: int, season_length: int) -> None:
        super().__init__()
        if name not in SERVED_BASELINES:
            raise ValueError(f"unknown baseline {name!r}; served: {list(SERVED_BASELINES)}")
        if name == "seasonal_naive" and season_length > input_size:
            raise ValueError(f"seasonal_naive needs season_length {season_length} <= input_size {input_size}")
        self.name, self.h, self.input_size, self.n_outputs = name, h, input_size, 1
        steps = torch.arange(1, h + 1)
        lag = steps - season_length * torch.ceil(steps / season_length).long()  # in (-m, 0]
        self.register_buffer("index", (input_size - 1 + lag).long(), persistent=False)
        self.register_buffer("ewma", ewma_weights(input_size).float()[None, :], persistent=False)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        if self.name == "naive":
            out = windows[:, -1:].expand(-1, self.h)
        elif self.name == "window_mean":
            out = windows.mean(dim=1, keepdim=True).expand(-1, self.h)
        elif self.name == "ewma":
            out = torch.sqrt((windows * windows * self.ewma).sum(dim=1, keepdim=True)).expand(-1, self.h)
        else:
            out = windows.index_select(1, self.index)
        return out.unsqueeze(-1)


class EnsembleGraph(nn.Module):
    """NHITS combined with a served baseline: ``w * nhits(windows, ...) + (1 - w) * baseline(windows)``, the
    baseline's single output broadcast over NHITS's outputs (yhat, or the quantiles). Same inputs and attributes as
    the NHITS graph (``windows (B, input_size)``, and ``hist_exog`` / ``futr_exog`` when the NHITS reads them); the
    baseline reads the last ``baseline.input_size`` values of the window (at most ``input_size``)."""

    def __init__(self, nhits: ServingNHITS, baseline: BaselineGraph, weight: float) -> None:
        super().__init__()
        weight = float(weight)
        if not 0.0 <= weight <= 1.0:  # NaN fails too
            raise ValueError(f"ensemble weight must be a finite number in [0, 1] (got {weight!r})")
        if baseline.h != nhits.h:
            raise ValueError(f"ensemble baseline h {baseline.h} != the NHITS's h {nhits.h}")
        if baseline.input_size > nhits.input_size:
            raise ValueError(f"ensemble baseline input_size {baseline.input_size} > the NHITS's {nhits.input_size}")
        self.nhits, self.baseline, self.weight = nhits, baseline, weight
        self.h, self.input_size, self.n_outputs = nhits.h, nhits.input_size, nhits.n_outputs
        self.hist_exog, self.futr_exog = nhits.hist_exog, nhits.futr_exog

    def forward(self, windows: torch.Tensor, hist_exog: torch.Tensor | None = None,
                futr_exog: torch.Tensor | None = None) -> torch.Tensor:
        base = self.baseline(windows[:, self.input_size - self.baseline.input_size:])  # (B, h, 1)
        return self.weight * self.nhits(windows, hist_exog, futr_exog) + (1.0 - self.weight) * base
