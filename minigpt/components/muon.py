"""Muon whose Newton-Schulz iterations run on all same-shaped matrices at once.

torch.optim.Muon orthogonalizes one matrix at a time: 15 small matmuls per matrix, so a
transformer's dozens of hidden matrices cost hundreds of kernel launches (launch-bound on a
GPU) and as many trips through the dispatcher on a CPU. Here the matrices of one shape are
stacked into a (k, m, n) tensor and iterated with batched matmuls; momentum, weight decay and
the step itself are foreach ops over the whole group. The update is torch.optim.Muon's: the
same coefficients, normalization, eps, Nesterov momentum, decoupled weight decay and learning
rate adjustment, so one is a drop-in replacement for the other (state dicts included).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


def newton_schulz(
    updates: Tensor, coefficients: tuple[float, float, float], steps: int, eps: float, dtype: torch.dtype
) -> Tensor:
    """torch.optim.Muon's quintic Newton-Schulz iteration on a stack (k, m, n) of matrices,
    each normalized by its own Frobenius norm; returns the stack in `dtype`."""
    a, b, c = coefficients
    x = updates.to(dtype)
    tall = x.size(-2) > x.size(-1)
    if tall:  # iterate on the wide orientation: the Gram matrix is then the smaller one
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


def adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: torch.Size) -> float:
    """torch.optim.Muon's per-shape learning rate: "original" (Keller Jordan's) or
    "match_rms_adamw" (Moonshot's, which lets Muon reuse AdamW's learning rate)."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return lr * math.sqrt(max(1, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr


def default_ns_dtype(device: torch.device) -> torch.dtype:
    """torch.optim.Muon iterates in bfloat16 everywhere. CPUs without native bf16 dot products
    (AVX512-BF16 or AMX) run that 20-50x slower than fp32 at these sizes, so they iterate in fp32."""
    if device.type != "cpu" or cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


@functools.cache  # asked on every optimizer step; the CPU does not change
def cpu_has_native_bf16() -> bool:
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # x86 only; elsewhere absent
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


class BatchedMuon(torch.optim.Muon):
    """torch.optim.Muon with the Newton-Schulz iterations batched across same-shaped matrices.
    ns_dtype: the iteration's dtype; None chooses by device (see default_ns_dtype)."""

    def __init__(self, params: Iterable, ns_dtype: torch.dtype | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)  # torch.optim.Muon's settings, checked by it
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            buffers: list[Tensor] = []
            self._init_group(group, params, grads, buffers)  # torch's checks; creates momentum buffers
            if params:
                self._update(group, params, grads, buffers)
        return loss

    def _update(self, group: dict, params: list[Tensor], grads: list[Tensor], buffers: list[Tensor]) -> None:
        momentum = group["momentum"]
        torch._foreach_lerp_(buffers, grads, 1 - momentum)
        updates = torch._foreach_lerp(grads, buffers, momentum) if group["nesterov"] else buffers
        torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
        for indices in same_kind(params).values():
            first = params[indices[0]]
            dtype = self.ns_dtype or default_ns_dtype(first.device)
            stacked = torch.stack([updates[i] for i in indices])
            ortho = newton_schulz(stacked, group["ns_coefficients"], group["ns_steps"], group["eps"], dtype)
            lr = adjusted_lr(group["lr"], group["adjust_lr_fn"], first.shape)
            torch._foreach_add_([params[i] for i in indices], ortho.to(first.dtype).unbind(), alpha=-lr)


def same_kind(params: list[Tensor]) -> dict[tuple, list[int]]:
    """Indices of the parameters that can share one batched iteration: same shape, dtype, device."""
    kinds: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        kinds.setdefault((p.shape, p.dtype, p.device), []).append(i)
    return kinds
