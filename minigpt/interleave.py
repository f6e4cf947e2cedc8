"""Interleaving: the order in which contenders take turns, so that a machine whose speed drifts
weighs on all of them alike. One primitive serves the speed phase, the micro-benchmark suite
and the acceptance scripts.

Within a round every contender takes `steps` turns, the order reversed after each pass
(A B C C B A ...), and each round starts the opposite way from the one before (C B A A B C ...).

    from minigpt.interleave import measure_rounds, timed

    timings = measure_rounds({"a": timed(step_a), "b": timed(step_b)}, rounds=10, warmup=2)
    timings.seconds["a"]   # per counted round, the seconds of each of a's turns
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
Measure = Callable[[], float]  # takes one turn and returns its seconds


def alternating(items: Sequence[T], turn: int) -> list[T]:
    """The items in their order on even turns and reversed on odd ones."""
    return list(items) if turn % 2 == 0 else list(items)[::-1]


def rounds(items: Sequence[T], count: int, steps: int = 1) -> Iterator[tuple[int, list[T]]]:
    """Each round's index and its turns in order: `steps` passes over the items, each pass the
    reverse of the one before, each round beginning opposite the one before it."""
    for index in range(count):
        yield index, [item for step in range(steps) for item in alternating(items, index + step)]


def timed(call: Callable[[], object], repeats: int = 1, clock: Callable[[], float] = time.perf_counter) -> Measure:
    """A measure of `call`: the mean seconds of `repeats` calls in a row, read from `clock`."""

    def measure() -> float:
        began = clock()
        for _ in range(repeats):
            call()
        return (clock() - began) / repeats

    return measure


@dataclass(frozen=True)
class Timings:
    seconds: dict[str, list[list[float]]]  # per contender that never failed: per counted round, each turn's seconds
    failed: dict[str, str]  # per contender whose measure raised: the error; it took no turn afterwards


def measure_rounds(
    measures: Mapping[str, Measure],
    count: int,
    steps: int = 1,
    warmup: int = 0,
    on_round: Callable[[], None] | None = None,
) -> Timings:
    """Take the turns of `warmup` uncounted rounds (they pay for allocation, thread pools and
    compilation), then of `count` counted ones. A measure that raises is left out from then on
    and its error kept: one contender that runs out of memory leaves the others their figures."""
    names = list(measures)
    seconds: dict[str, list[list[float]]] = {name: [] for name in names}
    failed: dict[str, str] = {}
    for index, turns in rounds(names, warmup + count, steps):
        taken: dict[str, list[float]] = {name: [] for name in names}
        for name in turns:
            if name in failed:
                continue
            try:
                taken[name].append(measures[name]())
            except Exception as error:  # out of memory, a compile failure: that contender has no speed
                failed[name] = f"{type(error).__name__}: {error}"
        if index >= warmup:
            for name in names:
                seconds[name].append(taken[name])
        if on_round is not None:
            on_round()
    return Timings({name: values for name, values in seconds.items() if name not in failed}, failed)
