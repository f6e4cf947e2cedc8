"""The size ladder: named sizes, one key's values, and the token rule."""

from __future__ import annotations

import pytest

from minigpt.config import Config
from minigpt.sizes import NAMED_SIZES, TOKEN_CAP, Size, SizeError, parse_sizes, size_tokens
from minigpt.stages import model_counts


def test_each_named_size_about_doubles_the_parameters_and_xs_is_the_presets_size() -> None:
    assert NAMED_SIZES["xs"] == {"n_layer": Config().n_layer, "n_embd": Config().n_embd}
    params = [model_counts(Config().replace(**changes))[0] for changes in NAMED_SIZES.values()]
    ratios = [after / before for before, after in zip(params, params[1:], strict=False)]
    assert all(1.6 < ratio < 2.5 for ratio in ratios), ratios


def test_the_token_rule_keeps_tokens_per_parameter_and_caps_large_sizes() -> None:
    assert size_tokens(800_000, 800_000, 600_000) == 600_000
    assert size_tokens(1_600_000, 800_000, 600_000) == 1_200_000
    assert size_tokens(400_000, 800_000, 600_000) == 300_000
    assert size_tokens(100_000_000, 800_000, 600_000) == TOKEN_CAP * 600_000


def test_one_keys_values_make_a_ladder_named_after_them() -> None:
    sizes = parse_sizes("n_embd=128,192")
    assert [s.name for s in sizes] == ["n_embd128", "n_embd192"]
    assert sizes[1].apply(Config()).n_embd == 192


@pytest.mark.parametrize(
    ("spec", "message"),
    [("xs,huge", "unknown size 'huge'"), ("colour=1,2", "not a numeric"), ("n_embd=a", "expects int"), (",", "empty")],
)
def test_bad_sizes_are_refused_with_a_reason(spec: str, message: str) -> None:
    with pytest.raises(SizeError, match=message):
        parse_sizes(spec)


def test_a_size_that_breaks_the_head_rule_names_itself() -> None:
    with pytest.raises(SizeError, match="size n_embd130 does not fit"):
        parse_sizes("n_embd=130")[0].apply(Config(n_head=4))


def test_named_sizes_keep_their_order_once_each() -> None:
    sizes = parse_sizes(" xs, s ,xs")
    assert sizes == [Size("xs", {"n_layer": 4, "n_embd": 128}), Size("s", {"n_layer": 5, "n_embd": 160})]
    assert sizes[1].describe() == "s (n_layer=5, n_embd=160)"
    sizes[1].changes["n_layer"] = 99  # each size owns its changes: the table of named sizes stays as it is
    assert NAMED_SIZES["s"]["n_layer"] == 5


def test_a_float_keys_values_stay_floats() -> None:
    sizes = parse_sizes("dropout=0.1,0.25")
    assert [(s.name, s.changes) for s in sizes] == [
        ("dropout0.1", {"dropout": 0.1}),
        ("dropout0.25", {"dropout": 0.25}),
    ]


def test_the_values_are_everything_after_the_first_equals_sign() -> None:
    with pytest.raises(SizeError, match=r"--sizes n_embd expects int values, got '128=256'"):
        parse_sizes("n_embd=128=256")


def test_refusals_name_the_choices() -> None:
    from minigpt.tune import numeric_keys

    with pytest.raises(SizeError) as refused:
        parse_sizes("colour=1,2")
    assert str(refused.value) == (
        f"--sizes colour=...: not a numeric configuration key; choose from {', '.join(numeric_keys())}"
    )
    with pytest.raises(SizeError) as empty:
        parse_sizes(" , ")
    assert str(empty.value) == "--sizes is empty; name sizes such as xs,s,m or give KEY=V1,V2"


def test_without_the_tokens_per_step_there_is_no_floor_of_steps() -> None:
    assert size_tokens(100, 800_000, 600_000) == 75  # tokens per parameter alone, however few


def test_budget_lines_read_each_sizes_baseline_or_else_its_first_group() -> None:
    from types import SimpleNamespace

    from minigpt.sizes import budget_lines
    from minigpt.train import Budget

    small, large = Size("xs", {"n_embd": 32}), Size("s", {"n_embd": 64})
    config = Config(n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=4)

    def group(size: Size | None, variant: str, budget: Budget) -> SimpleNamespace:
        return SimpleNamespace(size=size, variant=variant, config=size.apply(config) if size else config, budget=budget)

    groups = [
        group(small, "wide", Budget(max_tokens=6_400)),  # before the baseline: its line is replaced
        group(small, "baseline", Budget(max_tokens=3_200)),
        group(large, "wide", Budget(max_seconds=30)),  # no baseline at this size: the first group's
        group(None, "baseline", Budget(max_tokens=64)),  # no size: no line
    ]
    params_small = model_counts(small.apply(config))[0]
    params_large = model_counts(large.apply(config))[0]
    assert budget_lines(groups) == [
        f"size xs (n_embd=32): {params_small:,} parameters, 3,200 tokens (50 steps of 64, "
        f"{3_200 / params_small:.2f} tokens per parameter)",
        f"size s (n_embd=64): {params_large:,} parameters, trained for 30 s",
    ]


def test_an_unknown_size_lists_the_named_ones() -> None:
    with pytest.raises(SizeError) as refused:
        parse_sizes("huge")
    assert str(refused.value) == (
        "unknown size 'huge'; choose from xxs 3x96, xs 4x128, s 5x160, m 7x192, l 8x256, xl 10x320, or give KEY=V1,V2"
    )
