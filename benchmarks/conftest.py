"""Options and parametrization of the micro-benchmarks: every registered variant on every
requested device, so a new plugin is benchmarked with no edit here.

    pytest benchmarks/test_variants.py --variants baseline,swiglu --devices cpu --set n_layer=2

The benchmarked size is the default Config(), changed by `--set key=value` and then by each
variant, as `minigpt-bench run` builds its trials. A requested device this machine lacks is
skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from minigpt.bench import SuitePlan, plan_suite
from minigpt.config import Config
from minigpt.errors import UserError
from minigpt.measure import device_absent_reason
from minigpt.model import GPT

PLAN = pytest.StashKey[SuitePlan]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("minigpt-bench", "minigpt-bench micro-benchmarks")
    group.addoption("--variants", default="all", help="Comma-separated variant names, or all (the default).")
    group.addoption("--devices", default="auto", help="auto (every device here, the default), or e.g. cpu,cuda.")
    group.addoption(
        "--plugins",
        action="append",
        default=[],
        dest="variant_plugins",  # pytest's own -p already stores under "plugins"
        metavar="PATH",
        help="Extra plugin file or folder of variants (repeatable).",
    )
    group.addoption(
        "--set",
        action="append",
        default=[],
        dest="bench_overrides",
        metavar="KEY=VALUE",
        help="Change the benchmarked size or recipe (default: Config()), e.g. --set n_layer=1 (repeatable).",
    )


def pytest_configure(config: pytest.Config) -> None:
    # getoption's defaults cover a run that reached this folder without loading this file first
    try:
        config.stash[PLAN] = plan_suite(
            config.getoption("variants", "all"),
            config.getoption("devices", "auto"),
            config.getoption("variant_plugins", []),
            config.getoption("bench_overrides", []),
        )
    except UserError as error:
        raise pytest.UsageError(str(error)) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "bench_case" in metafunc.fixturenames:
        plan = metafunc.config.stash[PLAN]
        targets = [(variant, device) for variant in plan.configs for device in plan.devices]
        metafunc.parametrize("bench_case", targets, indirect=True, ids=[f"{v}-{d}" for v, d in targets])


@dataclass
class BenchCase:
    """One variant's freshly initialized model on one device, and how to time a call on it."""

    variant: str
    device: torch.device
    cfg: Config
    model: GPT

    def tokens(self, batch: int, length: int) -> torch.Tensor:
        return torch.randint(self.cfg.vocab_size, (batch, length), device=self.device)

    def measure(self, benchmark, case: str, call: Callable[[], None], tokens: int) -> None:  # noqa: ANN001
        """Time `call` (which synchronizes the device itself) after one untimed call that pays
        for allocation, thread start-up, lazy optimizer state and compilation."""
        benchmark.group = case
        benchmark.extra_info = {
            "variant": self.variant,
            "device": str(self.device),
            "case": case,
            "tokens": tokens,  # processed per call: tokens / median = tokens per second
            "threads": torch.get_num_threads(),  # set it with OMP_NUM_THREADS / torch.set_num_threads
            "config": self.cfg.to_dict(),
        }
        call()
        benchmark(call)


@pytest.fixture
def bench_case(request: pytest.FixtureRequest) -> BenchCase:
    variant, device = request.param
    reason = device_absent_reason(device)
    if reason:
        pytest.skip(f"{device}: {reason}")
    cfg = request.config.stash[PLAN].configs[variant]
    torch.manual_seed(0)
    return BenchCase(variant, torch.device(device), cfg, GPT(cfg).to(device))
