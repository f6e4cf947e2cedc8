"""Options and parametrization of the micro-benchmarks: every registered variant on every
requested device, so a new plugin is benchmarked with no edit here.

    pytest benchmarks/test_variants.py --variants baseline,swiglu --devices cpu --set n_layer=2

The benchmarked configuration is resolved as `minigpt-bench run` resolves its trials': the
preset (`--preset`, auto: chosen from the devices), changed by `--set key=value` and then by
each variant; `--run RUN_DIR` takes that run's recorded base configuration instead. A
requested device this machine lacks is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch

from minigpt import interleave
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
        "--rounds",
        type=int,
        default=5,
        dest="bench_rounds",
        help="Interleaved rounds: every variant is timed once per round, in alternating order (default 5).",
    )
    group.addoption(
        "--preset",
        default="auto",
        dest="bench_preset",
        help="Starting recipe, as for run: cpu-fast, gpu-fast, reference, or auto (the default: from the devices).",
    )
    group.addoption(
        "--set",
        action="append",
        default=[],
        dest="bench_overrides",
        metavar="KEY=VALUE",
        help="Change the preset's configuration, e.g. --set n_layer=1 (repeatable).",
    )
    group.addoption(
        "--run",
        default=None,
        dest="bench_run",
        metavar="RUN_DIR",
        help="Start from this run's recorded base configuration (its sweep.json) instead of the preset.",
    )


def pytest_configure(config: pytest.Config) -> None:
    # getoption's defaults cover a run that reached this folder without loading this file first
    try:
        config.stash[PLAN] = plan_suite(
            config.getoption("variants", "all"),
            config.getoption("devices", "auto"),
            config.getoption("variant_plugins", []),
            config.getoption("bench_overrides", []),
            config.getoption("bench_preset", "auto"),
            config.getoption("bench_run", None),
        )
    except UserError as error:
        raise pytest.UsageError(str(error)) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each case is timed in rounds, every variant once per round, the order reversed every
    round: drift of the machine then lands on every variant alike, and each variant's time
    can be paired with the baseline's of the same round."""
    if "bench_case" in metafunc.fixturenames:
        plan = metafunc.config.stash[PLAN]
        rounds = metafunc.config.getoption("bench_rounds", 5)
        names = list(plan.configs)
        targets = [
            (variant, device, turn)
            for device in plan.devices
            for turn, order in interleave.rounds(names, rounds)
            for variant in order
        ]
        ids = [f"{v}-{d}-r{turn}" for v, d, turn in targets]
        metafunc.parametrize("bench_case", targets, indirect=True, ids=ids)


@dataclass
class BenchCase:
    """One variant's freshly initialized model on one device, and how to time a call on it.
    The same case serves every round, so a round times the same model and optimizer state."""

    variant: str
    device: torch.device
    cfg: Config
    model: GPT
    calls: dict[str, tuple[Callable[[], None], int]] = field(default_factory=dict)
    turn: int = 0

    def tokens(self, batch: int, length: int) -> torch.Tensor:
        return torch.randint(self.cfg.vocab_size, (batch, length), device=self.device)

    def measure(self, benchmark, case: str, prepare: Callable[[], tuple[Callable[[], None], int]]) -> None:  # noqa: ANN001
        """Time the call that `prepare` builds (once per case; it synchronizes the device
        itself and processes the returned number of tokens). Its first call, untimed, pays for
        allocation, thread start-up, lazy optimizer state and compilation."""
        if case not in self.calls:
            self.calls[case] = prepare()
            self.calls[case][0]()
        call, tokens = self.calls[case]
        benchmark.group = case
        benchmark.extra_info = {
            "variant": self.variant,
            "device": str(self.device),
            "case": case,
            "round": self.turn,
            "tokens": tokens,  # processed per call: tokens / median = tokens per second
            "threads": torch.get_num_threads(),  # set it with OMP_NUM_THREADS / torch.set_num_threads
            "config": self.cfg.to_dict(),
        }
        benchmark(call)


CASES = pytest.StashKey[dict[tuple[str, str], BenchCase]]()


@pytest.fixture
def bench_case(request: pytest.FixtureRequest) -> BenchCase:
    variant, device, turn = request.param
    reason = device_absent_reason(device)
    if reason:
        pytest.skip(f"{device}: {reason}")
    cases = request.config.stash.setdefault(CASES, {})
    if (variant, device) not in cases:
        cfg = request.config.stash[PLAN].configs[variant]
        torch.manual_seed(0)
        cases[variant, device] = BenchCase(variant, torch.device(device), cfg, GPT(cfg).to(device))
    cases[variant, device].turn = turn
    return cases[variant, device]
