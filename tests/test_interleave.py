"""The interleaving primitive on a fake clock: the alternating order, rounds, warm-up rounds
left uncounted, and a contender that fails left out while the others go on."""

from __future__ import annotations

from minigpt.interleave import alternating, measure_rounds, rounds, timed


class FakeClock:
    """Time that moves only when a contender works: each call costs its contender's seconds."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def work(self, name: str, seconds: float):  # noqa: ANN201
        def call() -> None:
            self.calls.append(name)
            self.now += seconds

        return call


def test_the_order_reverses_every_pass_and_every_round_starts_opposite_the_last() -> None:
    assert alternating("abc", 0) == ["a", "b", "c"] and alternating("abc", 3) == ["c", "b", "a"]
    assert ["".join(turns) for _, turns in rounds("abc", 3, steps=2)] == ["abccba", "cbaabc", "abccba"]
    assert [(index, "".join(turns)) for index, turns in rounds(("old", "new"), 2)] == [(0, "oldnew"), (1, "newold")]


def test_timed_calls_take_the_mean_of_their_repeats_from_the_clock() -> None:
    clock = FakeClock()
    measure = timed(clock.work("a", 0.25), repeats=4, clock=clock)
    assert measure() == 0.25 and clock.calls == ["a"] * 4 and clock.now == 1.0


def test_warmup_rounds_are_taken_but_not_counted() -> None:
    clock = FakeClock()
    costs = {"a": 1.0, "b": 2.0, "c": 3.0}
    measures = {name: timed(clock.work(name, cost), clock=clock) for name, cost in costs.items()}
    ticks: list[int] = []

    timings = measure_rounds(measures, 2, steps=2, warmup=1, on_round=lambda: ticks.append(len(clock.calls)))

    assert "".join(clock.calls) == "abccba" + "cbaabc" + "abccba"
    assert ticks == [6, 12, 18]
    assert timings.seconds == {name: [[cost, cost], [cost, cost]] for name, cost in costs.items()}
    assert timings.failed == {}


def test_a_measure_that_raises_is_left_out_and_the_others_go_on() -> None:
    clock = FakeClock()

    def out_of_memory() -> float:
        clock.calls.append("b")
        raise RuntimeError("out of memory")

    measures = {"a": timed(clock.work("a", 1.0), clock=clock), "b": out_of_memory, "c": timed(clock.work("c", 2.0), clock=clock)}  # fmt: skip

    timings = measure_rounds(measures, 2)

    assert "".join(clock.calls) == "abcca"
    assert timings.seconds == {"a": [[1.0], [1.0]], "c": [[2.0], [2.0]]}
    assert timings.failed == {"b": "RuntimeError: out of memory"}
