"""Muon whose Newton-Schulz iterations run on all same-shaped matrices at once.

torch.optim.Muon orthogonalizes one matrix at a time: 15 small matmuls per matrix, so a
transformer's dozens of hidden matrices cost hundreds of kernel launches (launch-bound on a
GPU) and as many trips through the dispatcher on a CPU. Here the matrices of one shape are
stacked into a (k, m, n) tensor and iterated with batched matmuls; momentum, weight decay and
the step itself are foreach ops over the whole group. The update is torch.optim.Muon's: the
same coefficients, normalization, eps, Nesterov momentum, decoupled weight decay and learning
rate adjustment, so one is a drop-in replacement for the other (state dicts included).

Muon orthogonalizes matrices, so what counts as one matrix changes the update. By default each
parameter is one; `matrices` names logical matrices that cut across the layout instead, each a
list of row blocks (param, start, stop) stacked in order: attention's query, key and value
projections can then be treated as the same matrices whether they live in one fused weight or
in one module per head (see minigpt.components.optimizers.muon_matrices).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
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


def adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: Sequence[int]) -> float:
    """torch.optim.Muon's per-shape learning rate: "original" (Keller Jordan's) or
    "match_rms_adamw" (Moonshot's, which lets Muon reuse AdamW's learning rate). `shape` is
    the orthogonalized matrix's, a logical one's where parameters are cut or joined."""
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


RowBlock = tuple[Tensor, int, int]  # rows start:stop of a 2-D parameter


@dataclass(frozen=True)
class Segment:
    """Rows start:stop of params[index], one piece of a stack of logical matrices."""

    index: int
    start: int
    stop: int
    whole: bool  # every row of the parameter: used as it is, no slicing


@dataclass(frozen=True)
class Stack:
    """Same-shaped logical matrices orthogonalized in one batched call: their row segments in
    order, concatenated, are `count` matrices of `shape`."""

    shape: tuple[int, int]
    count: int
    segments: tuple[Segment, ...]


class BatchedMuon(torch.optim.Muon):
    """torch.optim.Muon with the Newton-Schulz iterations batched across same-shaped matrices.
    ns_dtype: the iteration's dtype; None chooses by device (see default_ns_dtype).
    matrices: logical matrices, each a list of row blocks (param, start, stop) stacked in that
    order; together they cover each parameter they name exactly once. Parameters they do not
    name are each one matrix."""

    def __init__(
        self,
        params: Iterable,
        ns_dtype: torch.dtype | None = None,
        matrices: Sequence[Sequence[RowBlock]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(params, **kwargs)  # torch.optim.Muon's settings, checked by it
        self.ns_dtype = ns_dtype
        self.matrices = [list(matrix) for matrix in matrices]
        check_matrices(self.matrices, [p for group in self.param_groups for p in group["params"]])
        self._stacks: dict[tuple[int, ...], list[Stack]] = {}  # by the parameters that have gradients

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
        for stack in self._stacks_for(params):
            first = params[stack.segments[0].index]
            dtype = self.ns_dtype or default_ns_dtype(first.device)
            pieces = [rows(updates, segment) for segment in stack.segments]
            stacked = (torch.cat(pieces) if len(pieces) > 1 else pieces[0]).view(stack.count, *stack.shape)
            ortho = newton_schulz(stacked, group["ns_coefficients"], group["ns_steps"], group["eps"], dtype)
            lr = adjusted_lr(group["lr"], group["adjust_lr_fn"], stack.shape)
            sizes = [segment.stop - segment.start for segment in stack.segments]
            sources = ortho.to(first.dtype).reshape(-1, stack.shape[1]).split(sizes)
            targets = [rows(params, segment) for segment in stack.segments]
            torch._foreach_add_(targets, list(sources), alpha=-lr)

    def _stacks_for(self, params: list[Tensor]) -> list[Stack]:
        """The stacks for this set of parameters with gradients, planned once per set."""
        key = tuple(id(p) for p in params)
        if key not in self._stacks:
            self._stacks[key] = plan_stacks(params, self.matrices)
        return self._stacks[key]


def rows(tensors: list[Tensor], segment: Segment) -> Tensor:
    tensor = tensors[segment.index]
    return tensor if segment.whole else tensor[segment.start : segment.stop]


def check_matrices(matrices: list[list[RowBlock]], params: list[Tensor]) -> None:
    """Each logical matrix joins 2-D row blocks of equal width from this optimizer's parameters,
    and every parameter named is covered row by row, exactly once."""
    held = {id(p) for p in params}
    covered: dict[int, list[tuple[int, int]]] = {}
    named: dict[int, Tensor] = {}
    for matrix in matrices:
        if not matrix:
            raise ValueError("a logical matrix needs at least one row block")
        for param, start, stop in matrix:
            if id(param) not in held:
                raise ValueError("a logical matrix names a parameter this optimizer does not update")
            if param.dim() != 2 or param.size(1) != matrix[0][0].size(1) or not 0 <= start < stop <= param.size(0):
                raise ValueError(
                    f"row block {start}:{stop} of a {tuple(param.shape)} parameter does not fit its matrix"
                )
            covered.setdefault(id(param), []).append((start, stop))
            named[id(param)] = param
    for key, spans in covered.items():
        ends = [0] + [stop for _, stop in sorted(spans)]
        if [start for start, _ in sorted(spans)] != ends[:-1] or ends[-1] != named[key].size(0):
            raise ValueError(
                f"logical matrices must cover each {tuple(named[key].shape)} parameter's rows exactly once"
            )


def plan_stacks(params: list[Tensor], matrices: list[list[RowBlock]]) -> list[Stack]:
    """Logical matrices over `params` (the named ones; each other parameter alone), grouped by
    shape, dtype and device in order of first appearance, each group's row segments in order
    with neighbouring rows of one parameter joined, so a fused weight stays one slice."""
    index = {id(p): i for i, p in enumerate(params)}
    named = {id(param) for matrix in matrices for param, _, _ in matrix}
    logical: list[list[tuple[int, int, int]]] = []
    for matrix in matrices:
        present = [(index[id(p)], start, stop) for p, start, stop in matrix if id(p) in index]
        if present:  # rows of a parameter without a gradient are left out, as the parameter is
            logical.append(present)
    logical += [[(i, 0, p.size(0))] for i, p in enumerate(params) if id(p) not in named]
    logical.sort(key=lambda matrix: min(i for i, _, _ in matrix))
    kinds: dict[tuple, list[list[tuple[int, int, int]]]] = {}
    for matrix in logical:
        first = params[matrix[0][0]]
        height = sum(stop - start for _, start, stop in matrix)
        kinds.setdefault(((height, first.size(1)), first.dtype, first.device), []).append(matrix)
    stacks = []
    for (shape, _, _), group in kinds.items():
        segments: list[list[int]] = []
        for i, start, stop in (block for matrix in group for block in matrix):
            if segments and segments[-1][0] == i and segments[-1][2] == start:
                segments[-1][2] = stop
            else:
                segments.append([i, start, stop])
        whole = [Segment(i, start, stop, start == 0 and stop == params[i].size(0)) for i, start, stop in segments]
        stacks.append(Stack(shape, len(group), tuple(whole)))
    return stacks
