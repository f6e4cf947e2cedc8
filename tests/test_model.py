"""The model: shapes, causality for every position scheme and attention kernel, RoPE's
relative property, ALiBi, parameter counts, kernels that agree, and config validation."""

from __future__ import annotations

import pytest
import torch

from minigpt import components
from minigpt.components.attentions import LoopedAttention
from minigpt.components.positions import alibi_slopes
from minigpt.config import Config, ConfigError
from minigpt.model import GPT
from minigpt.precision import resolve_precision

from .conftest import TINY

POSITIONS = components.position.names()
ATTENTIONS = components.attention.names()


def tiny(**changes: object) -> Config:
    return Config(**{**TINY, "vocab_size": 11, **changes})


def test_logits_have_batch_time_vocab_shape() -> None:
    model = GPT(tiny())
    idx = torch.randint(11, (3, 16))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 16, 11)
    assert loss.shape == ()


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("position", POSITIONS)
def test_a_later_token_never_changes_earlier_logits(position: str, attention: str) -> None:
    torch.manual_seed(0)
    model = GPT(tiny(position=position, attention=attention)).eval()
    idx = torch.randint(11, (2, 16))
    changed = idx.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 11
    before, _ = model(idx)
    after, _ = model(changed)
    torch.testing.assert_close(before[:, :10], after[:, :10])
    assert not torch.allclose(before[:, 10:], after[:, 10:])


def test_rope_score_depends_only_on_the_offset() -> None:
    rope = components.position.build("rope", tiny(block_size=64))
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(q_pos: int, k_pos: int) -> torch.Tensor:
        return (rope.rotate(q, q_pos) * rope.rotate(k, k_pos)).sum()

    for offset in (0, 3, 17):
        reference = score(offset, 0)
        for shift in (1, 9, 40):
            torch.testing.assert_close(score(offset + shift, shift), reference)
    assert not torch.allclose(score(5, 0), score(6, 0))


def test_rope_keeps_vector_norms() -> None:
    rope = components.position.build("rope", tiny())
    t = torch.randn(2, 2, 16, 8)
    torch.testing.assert_close(rope.rotate(t, 0).norm(dim=-1), t.norm(dim=-1))


def test_alibi_slopes_follow_the_paper() -> None:
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2.0 ** -(2 * (i + 1)) for i in range(4)]))
    assert len(alibi_slopes(6)) == 6


def test_alibi_bias_is_minus_slope_times_distance() -> None:
    alibi = components.position.build("alibi", tiny(n_head=2))
    bias = alibi.attn_bias(0, 4, 4)
    slopes = alibi_slopes(2)
    assert bias.shape == (2, 4, 4)
    for i in range(4):
        for j in range(i + 1):
            torch.testing.assert_close(bias[:, i, j], -slopes * (i - j))


def position_params(model: GPT) -> int:
    return sum(p.numel() for p in model.position.parameters())


def test_position_schemes_have_the_parameters_they_should() -> None:
    assert position_params(GPT(tiny(position="none"))) == 0
    assert position_params(GPT(tiny(position="rope"))) == 0
    assert position_params(GPT(tiny(position="alibi"))) == 0
    assert position_params(GPT(tiny(position="sinusoidal"))) == 0
    assert position_params(GPT(tiny(position="learned"))) == 16 * 16  # block_size x n_embd
    assert position_params(GPT(tiny(position="rope+learned"))) == 16 * 16


def copy_batched_into_looped(batched: GPT, looped: GPT) -> None:
    """Give the looped model the batched one's weights: c_attn's rows split into per-head q, k, v."""
    state = dict(batched.state_dict())
    n_embd, head = batched.cfg.n_embd, batched.cfg.head_size
    for index, block in enumerate(looped.blocks):
        assert isinstance(block.attn, LoopedAttention)
        q, k, v = state.pop(f"blocks.{index}.attn.c_attn.weight").split(n_embd)
        for h in range(batched.cfg.n_head):
            rows = slice(h * head, (h + 1) * head)
            state[f"blocks.{index}.attn.heads.{h}.query.weight"] = q[rows]
            state[f"blocks.{index}.attn.heads.{h}.key.weight"] = k[rows]
            state[f"blocks.{index}.attn.heads.{h}.value.weight"] = v[rows]
    looped.load_state_dict(state)


@pytest.mark.parametrize("position", POSITIONS)
def test_sdpa_manual_and_looped_attention_agree(position: str) -> None:
    torch.manual_seed(0)
    sdpa = GPT(tiny(position=position, attention="sdpa")).eval()
    manual = GPT(tiny(position=position, attention="manual")).eval()
    manual.load_state_dict(sdpa.state_dict())
    looped = GPT(tiny(position=position, attention="looped")).eval()
    copy_batched_into_looped(sdpa, looped)
    idx = torch.randint(11, (2, 16))
    expected, _ = sdpa(idx)
    torch.testing.assert_close(manual(idx)[0], expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(looped(idx)[0], expected, atol=1e-5, rtol=1e-4)


def test_swiglu_matches_gelu_parameter_count_within_two_percent() -> None:
    for n_embd in (128, 384):
        gelu = GPT(tiny(n_embd=n_embd, n_head=4)).num_params()
        swiglu = GPT(tiny(n_embd=n_embd, n_head=4, mlp="swiglu")).num_params()
        assert abs(swiglu / gelu - 1) < 0.02


def test_tied_weights_share_one_matrix() -> None:
    model = GPT(tiny(tie_weights=True))
    assert model.lm_head.weight is model.wte.weight
    assert model.num_params() == GPT(tiny()).num_params() - 11 * 16


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_embd": 30, "n_head": 4}, "divisible by n_head"),
        ({"n_embd": 24, "n_head": 8}, "even head size"),
        ({"n_layer": 0}, "n_layer must be at least 1"),
        ({"block_size": 0}, "block_size must be at least 1"),
        ({"n_embd": -4}, "n_embd must be at least 1"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"lr": 0.0}, "lr must be > 0"),
    ],
)
def test_invalid_configs_say_what_to_change(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tiny(**changes)


def test_unknown_component_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError, match="did you mean layernorm"):
        GPT(tiny(norm="layernrom"))


def test_with_overrides_types_values_and_rejects_unknown_keys() -> None:
    cfg = Config().with_overrides(["n_layer=6", "lr=1e-3", "bias=true", "position=alibi"])
    assert (cfg.n_layer, cfg.lr, cfg.bias, cfg.position) == (6, 1e-3, True, "alibi")
    with pytest.raises(ConfigError, match="valid keys: vocab_size"):
        Config().with_overrides(["layers=6"])
    with pytest.raises(ConfigError, match="n_layer expects int"):
        Config().with_overrides(["n_layer=six"])
    with pytest.raises(ConfigError, match="key=value"):
        Config().with_overrides(["n_layer"])


def test_precision_and_compile_take_only_their_choices() -> None:
    with pytest.raises(ConfigError, match=r"precision must be one of auto\|fp32\|tf32\|bf16\|fp16, got 'fp8'"):
        Config().with_overrides(["precision=fp8"])
    with pytest.raises(ConfigError, match=r"compile must be one of false\|default\|reduce-overhead\|max-autotune"):
        Config().with_overrides(["compile=fast"])
    assert Config().with_overrides(["compile=max-autotune", "precision=bf16"]).compile == "max-autotune"
    with pytest.raises(ConfigError, match="compile must be one of"):
        Config().with_overrides(["compile=true"])  # compile names a mode, not a switch
    assert Config.from_dict(Config(compile="reduce-overhead").to_dict()).compile == "reduce-overhead"


def test_auto_precision_is_bf16_only_on_a_cuda_device_that_supports_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", cuda) == "bf16"
    assert resolve_precision("fp16", cuda) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", cuda) == "fp32"
    with pytest.raises(ConfigError, match="precision must be one of"):
        resolve_precision("half", cuda)
