"""Numeric precision of a trial: which dtype the forward pass runs in, whether float32 matmuls
may use TF32, and whether the loss needs scaling. Weights, optimizer state and checkpoints stay
float32 in every mode; only the autocast region computes in a lower precision."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from minigpt.config import PRECISIONS, ConfigError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """The concrete precision `auto` stands for on `device`: bf16 autocast on a cuda device
    that supports it, fp32 elsewhere (cpu and mps gain little or lose from it)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {'|'.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def dtype_of(precision: str) -> torch.dtype:
    """The dtype matmuls run in under a resolved precision (tf32 computes on float32 tensors)."""
    return AUTOCAST_DTYPES.get(precision, torch.float32)


@contextlib.contextmanager
def float32_matmuls(precision: str, device: torch.device) -> Iterator[None]:
    """On cuda, float32 matmuls may use TF32 tensor cores exactly when `precision` is tf32 (the
    cuda half of set_float32_matmul_precision("high")), restored on exit so one trial's choice
    never leaks into the next. CPU matmuls are left alone: tf32 on cpu is plain fp32."""
    if device.type != "cuda":
        yield
        return
    # The cuda-only flag: the global setter would also switch oneDNN's CPU matmuls.
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


@dataclass(frozen=True)
class Precision:
    """A resolved precision on one device: the autocast context and loss scaler it calls for."""

    name: str
    device: torch.device

    @classmethod
    def resolve(cls, precision: str, device: torch.device) -> Precision:
        return cls(resolve_precision(precision, device), device)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return AUTOCAST_DTYPES.get(self.name)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def float32_matmuls(self) -> contextlib.AbstractContextManager:
        """Where this precision's float32 matmuls must run (see float32_matmuls)."""
        return float32_matmuls(self.name, self.device)

    def scaler(self) -> torch.amp.GradScaler | None:
        """fp16's narrow range underflows small gradients unless the loss is scaled up first;
        bf16 has float32's range and needs no scaler."""
        return torch.amp.GradScaler(self.device.type) if self.name == "fp16" else None
