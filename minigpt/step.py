"""One training step, built once from (Config, device, seed) and run alike by the trainer, the
interleaved speed phase and the micro-benchmark suite, so that all three time the same work:
forward under the trial's autocast, backward (through the loss scaler for fp16), gradient
clipping, the optimizer step.

    step = TrainStep(cfg, "cpu", seed=0)
    with step.precision.float32_matmuls():
        loss = step.step(x, y)  # still on the device: reading it is the caller's sync
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager

import torch
from torch import nn

from minigpt import components
from minigpt.allocator import keep_freed_memory
from minigpt.components.contracts import check_components
from minigpt.config import Config
from minigpt.measure import synchronize
from minigpt.model import GPT
from minigpt.precision import Precision


def compile_model(model: nn.Module, mode: str) -> nn.Module:
    """`model` torch.compile'd in `mode` (a Config.compile value), or itself when mode is "false"."""
    return model if mode == "false" else torch.compile(model, mode=mode)


class TrainStep:
    """The model, its optimizer, precision and compile mode, and the step that updates them.

    The model is initialized under torch.manual_seed(seed), then the optimizer is built: the
    same seed gives the same weights wherever the step runs."""

    def __init__(self, cfg: Config, device: torch.device | str, seed: int) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        if self.device.type == "cpu":
            keep_freed_memory()
        torch.manual_seed(seed)
        self.model = GPT(cfg).to(self.device)
        check_components(self.model)
        self.optimizer = components.optimizer.build(cfg.optimizer, self.model, cfg, self.device)
        self.compiled = cfg.compile != "false"
        self.step_model = compile_model(self.model, cfg.compile)
        # CUDA graphs replay into the same output buffers: each step must be marked as new
        self.cuda_graphs = cfg.compile == "reduce-overhead" and self.device.type == "cuda"
        self.precision = Precision.resolve(cfg.precision, self.device)
        self.scaler = self.precision.scaler()
        self._update = self._plain_update if self.scaler is None else self._scaled_update

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.batch_size * self.cfg.block_size

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the batch (forward, backward, clipping, update); returns the
        loss, still on the device. Run it inside `precision.float32_matmuls()`."""
        self._mark_step()
        with self.precision.autocast():
            _, loss = self.step_model(x, y)
        self._update(loss)
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def warm_up(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Seconds to compile the step: forward and backward on a batch of the training shape,
        then the gradients dropped. No optimizer step, and the RNG is left as it was, so the
        trajectory is the one an uncompiled step would follow."""
        began = time.perf_counter()
        with self._rng_kept():
            # CUDA graph trees run the first call eagerly and record on the second
            for _ in range(2 if self.cuda_graphs else 1):
                self._mark_step()
                with self.precision.autocast():
                    _, loss = self.step_model(x, y)
                loss.backward()
            self.optimizer.zero_grad(set_to_none=True)
            synchronize(self.device)
        return time.perf_counter() - began

    def _mark_step(self) -> None:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()

    def _rng_kept(self) -> AbstractContextManager:
        if self.device.type == "cpu":
            return torch.random.fork_rng(devices=[])
        return torch.random.fork_rng(devices=[self.device], device_type=self.device.type)

    def _plain_update(self, loss: torch.Tensor) -> None:
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()

    def _scaled_update(self, loss: torch.Tensor) -> None:
        """fp16: backward through the scaled loss, clip the true (unscaled) gradients; the scaler
        skips a step whose gradients overflowed. Fused AdamW takes that decision on the device;
        other optimizers make the scaler read it on the host, one sync per step."""
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
