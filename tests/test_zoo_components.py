"""The modern components and their variants: grouped-query attention, qk-norm, sliding windows,
partial RoPE and its base, GeGLU, Dynamic Tanh and Lion. Each is checked against the property
that defines it, with every attention kernel and position scheme; cached decoding stays the
plain loop's; parameter counts and FLOPs per token equal hand counts."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from minigpt import components
from minigpt.components.attentions import ManualAttention
from minigpt.components.mlps import geglu_hidden_size
from minigpt.components.optimizers import Lion
from minigpt.config import PRESETS, Config, ConfigError
from minigpt.generate import Context, generate
from minigpt.measure import flops_per_token
from minigpt.model import GPT
from minigpt.variants import discover

from .conftest import BLOCK, VOCAB, plain_loop, random_model

POSITIONS = components.position.names()
KERNELS = components.attention.names()
ZOO = ["qk-norm", "gqa", "mqa", "sliding-window", "partial-rope", "rope-base-1000", "geglu", "dyt", "lion"]


def zoo_model(position: str, attention: str, seed: int = 0, **changes: object) -> GPT:
    """A tiny random model with grouped key/value heads, qk-norm, a windowed first layer and
    (for RoPE) partial rotation, its weights large enough that greedy choices never tie."""
    zoo = {"n_kv_head": 2, "qk_norm": True, "window": 3, "rope_fraction": 0.5 if "rope" in position else 1.0}
    cfg = Config(vocab_size=len(VOCAB), n_layer=2, n_embd=16, n_head=4, block_size=BLOCK, position=position,
                 attention=attention, **{**zoo, **changes})  # fmt: skip
    return random_model(cfg, seed)


# decoding


@pytest.mark.parametrize("attention", KERNELS)
@pytest.mark.parametrize("position", POSITIONS)
def test_cached_decoding_of_the_zoo_equals_the_plain_loop_past_block_size(position: str, attention: str) -> None:
    model = zoo_model(position, attention)
    assert model.cfg.layer_window(0) == 3 < BLOCK
    prompt, steps = [1, 2, 3], 3 * BLOCK
    expected = plain_loop(model, prompt, steps)
    assert generate(model, prompt, steps, temperature=0)[0].tolist() == expected


@pytest.mark.parametrize("attention", KERNELS)
@pytest.mark.parametrize("position", ["rope", "alibi", "none"])
@torch.no_grad()
def test_the_cache_holds_only_key_value_heads_and_masks_keys_older_than_the_window(
    position: str, attention: str
) -> None:
    model = zoo_model(position, attention, seed=1)
    tokens = torch.randint(len(VOCAB), (2, BLOCK + 2), generator=torch.Generator().manual_seed(0))
    context = Context(model, tokens[:, :1], use_cache=True)
    logits = context.first_logits()
    for end in range(2, tokens.size(1) + 1):  # one token at a time, the cache well past the window
        window = tokens[:, max(0, end - 1 - BLOCK) : end - 1]
        torch.testing.assert_close(logits, model(window)[0][:, -1], rtol=1e-4, atol=1e-5)
        if context.cache is not None:
            assert [layer.k.size(1) for layer in context.cache.layers] == [2, 2]  # n_kv_head, not n_head
            assert context.cache.layers[0].v.size(1) == 2
        logits = context.append(tokens[:, end - 1 : end])


@pytest.mark.parametrize("attention", KERNELS)
@pytest.mark.parametrize("position", POSITIONS)
def test_the_zoo_is_causal(position: str, attention: str) -> None:
    model = zoo_model(position, attention)
    idx = torch.randint(len(VOCAB), (2, BLOCK))
    changed = idx.clone()
    changed[:, 5] = (changed[:, 5] + 1) % len(VOCAB)
    torch.testing.assert_close(model(idx)[0][:, :5], model(changed)[0][:, :5])


# grouped-query attention


def test_grouped_key_value_projections_are_n_kv_head_over_n_head_of_the_baselines() -> None:
    cfg = Config(n_embd=32, n_head=4)
    for kv_heads in (4, 2, 1):
        attn = components.attention.build("sdpa", cfg.replace(n_kv_head=kv_heads))
        q_rows, kv_rows = 32, 2 * 32 * kv_heads // 4  # k and v: kv_heads heads of 8 dims each
        assert attn.c_attn.weight.shape == (q_rows + kv_rows, 32)
        looped = components.attention.build("looped", cfg.replace(n_kv_head=kv_heads))
        assert sum(hasattr(head, "key") and hasattr(head, "value") for head in looped.heads) == kv_heads


def mha_from_gqa(gqa: GPT, attention: str) -> GPT:
    """A plain multi-head model whose every query head has its own copy of the key and value
    weights that it shares in `gqa`."""
    cfg = gqa.cfg
    mha = GPT(cfg.replace(n_kv_head=0)).eval()
    H, K, D, C = cfg.n_head, cfg.kv_heads, cfg.head_size, cfg.n_embd
    state = dict(gqa.state_dict())
    for layer in range(cfg.n_layer):
        prefix = f"blocks.{layer}.attn."
        if attention == "looped":
            for h in range(K, H):
                for part in ("key", "value"):
                    state[f"{prefix}heads.{h}.{part}.weight"] = state[f"{prefix}heads.{h // (H // K)}.{part}.weight"]
            continue
        q, k, v = state[prefix + "c_attn.weight"].split((C, K * D, K * D))
        repeat = [t.view(K, D, C).repeat_interleave(H // K, dim=0).reshape(C, C) for t in (k, v)]
        state[prefix + "c_attn.weight"] = torch.cat((q, *repeat))
    mha.load_state_dict(state)
    return mha


@pytest.mark.parametrize("attention", KERNELS)
@pytest.mark.parametrize("position", ["rope", "alibi", "learned"])
def test_grouped_heads_equal_plain_heads_that_share_the_same_weights(position: str, attention: str) -> None:
    gqa = zoo_model(position, attention, n_kv_head=1)
    mha = mha_from_gqa(gqa, attention)
    idx = torch.randint(len(VOCAB), (2, BLOCK))
    torch.testing.assert_close(gqa(idx)[0], mha(idx)[0], rtol=1e-4, atol=1e-5)
    same_heads = zoo_model(position, attention, n_kv_head=4)  # n_kv_head = n_head is plain attention
    torch.testing.assert_close(same_heads(idx)[0], mha_from_gqa(same_heads, attention)(idx)[0])


@pytest.mark.parametrize("position", POSITIONS)
def test_sdpa_and_manual_kernels_agree_on_the_zoo(position: str) -> None:
    sdpa = zoo_model(position, "sdpa")
    manual = zoo_model(position, "manual")
    manual.load_state_dict(sdpa.state_dict())
    idx = torch.randint(len(VOCAB), (2, BLOCK))
    torch.testing.assert_close(manual(idx)[0], sdpa(idx)[0], rtol=1e-4, atol=1e-5)


# qk-norm


@pytest.mark.parametrize("position", ["rope", "none", "alibi"])
def test_qk_norm_gives_queries_and_keys_unit_rms_per_head(position: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    attend = ManualAttention.attend

    def spy(self, q, k, v, mask, causal):  # noqa: ANN001, ANN202
        seen.append((q, k))
        return attend(self, q, k, v, mask, causal)

    monkeypatch.setattr(ManualAttention, "attend", spy)
    torch.manual_seed(0)
    model = GPT(Config(n_layer=2, n_embd=32, n_head=4, n_kv_head=2, qk_norm=True, position=position,
                       attention="manual"))  # fmt: skip
    model(torch.randint(65, (2, 16)))
    assert len(seen) == 2
    for q, k in seen:  # fresh gains are ones; RoPE's rotation keeps norms
        for t in (q, k):
            torch.testing.assert_close(t.pow(2).mean(-1).sqrt(), torch.ones(t.shape[:-1]), rtol=1e-3, atol=1e-3)
    assert [n for n, _ in model.named_parameters() if "norm" in n and "attn" in n] == [
        f"blocks.{i}.attn.{which}_norm.weight" for i in range(2) for which in ("q", "k")
    ]


# sliding windows


def test_the_window_pattern_cycles_and_spares_the_last_layer() -> None:
    cfg = Config(n_layer=5, block_size=16, window=4)
    assert [cfg.layer_window(i) for i in range(5)] == [4, 0, 4, 0, 0]
    assert [cfg.replace(window_pattern="SSL").layer_window(i) for i in range(5)] == [4, 4, 0, 4, 0]
    assert [Config(n_layer=2).layer_window(i) for i in range(2)] == [0, 0]  # window 0: all full
    for n_layer in range(2, 7):  # from two layers on, some layer is windowed and the last is full
        windows = [cfg.replace(n_layer=n_layer).layer_window(i) for i in range(n_layer)]
        assert 4 in windows and windows[-1] == 0
    model = GPT(cfg.replace(n_layer=2))
    assert [block.attn.window for block in model.blocks] == [4, 0]


@pytest.mark.parametrize("attention", KERNELS)
@pytest.mark.parametrize("position", ["rope", "alibi", "none"])
@torch.no_grad()
def test_a_key_beyond_the_window_has_no_influence(position: str, attention: str) -> None:
    torch.manual_seed(0)
    cfg = Config(n_embd=16, n_head=4, n_kv_head=2, block_size=16, window=4, position=position, attention=attention)
    attn = components.attention.build(attention, cfg)
    scheme = components.position.build(position, cfg)
    x = torch.randn(2, 16, 16)
    moved = x.clone()
    moved[:, 5] += 3.0
    before, after = attn(x, scheme), attn(moved, scheme)
    torch.testing.assert_close(before[:, 9:], after[:, 9:])  # 5 is out of the windows of 9 and later
    assert not torch.allclose(before[:, 5:9], after[:, 5:9])  # and in those of 5..8
    torch.testing.assert_close(before[:, :5], after[:, :5])


# rotary positions


def test_partial_rope_leaves_the_unrotated_dims_position_independent() -> None:
    rope = components.position.build("rope", Config(n_embd=32, n_head=2, rope_fraction=0.25))  # 4 of 16 dims
    t = torch.randn(1, 1, 1, 16).expand(1, 1, 20, 16)  # one vector at 20 positions
    rotated = rope.rotate(t, start=3)
    torch.testing.assert_close(rotated[..., 4:], t[..., 4:], rtol=0, atol=0)
    assert not torch.allclose(rotated[..., 1, :4], rotated[..., 2, :4])
    torch.testing.assert_close(rotated.norm(dim=-1), t.norm(dim=-1))


@pytest.mark.parametrize("base", [10000.0, 1000.0])
def test_rope_base_sets_the_rotation_frequencies(base: float) -> None:
    rope = components.position.build("rope", Config(n_embd=32, n_head=2, rope_base=base))
    sin, cos = rope.signed_sin[1, 8:].double(), rope.cos[1, :8].double()
    angles = torch.atan2(sin, cos)  # at position 1 each pair's angle is its frequency
    expected = torch.tensor([base ** (-i / 8) for i in range(8)], dtype=torch.float64)
    torch.testing.assert_close(angles, expected, rtol=1e-4, atol=1e-5)


# MLPs and norms


@pytest.mark.parametrize("n_embd", [16, 40, 128, 384])
def test_geglu_parameter_count_matches_gelus_within_a_row(n_embd: int) -> None:
    cfg = Config(n_layer=1, n_head=4, n_embd=n_embd)
    gelu = sum(p.numel() for p in components.mlp.build("gelu", cfg).parameters())
    geglu = sum(p.numel() for p in components.mlp.build("geglu", cfg).parameters())
    assert gelu == 8 * n_embd**2
    assert geglu == 3 * n_embd * geglu_hidden_size(n_embd)
    assert abs(geglu - gelu) <= n_embd


def test_geglu_is_a_gelu_gate_times_a_linear_value() -> None:
    cfg = Config(n_embd=16, n_head=2)
    geglu = components.mlp.build("geglu", cfg)
    x = torch.randn(3, 16)
    gate_weight, value_weight = geglu.c_fc.weight.chunk(2, dim=0)
    expected = (F.gelu(x @ gate_weight.t()) * (x @ value_weight.t())) @ geglu.c_proj.weight.t()
    torch.testing.assert_close(geglu(x), expected)


def test_dyt_is_weight_times_tanh_of_alpha_x_plus_bias() -> None:
    dyt = components.norm.build("dyt", Config(n_embd=8, n_head=2))
    assert dyt.alpha.item() == 0.5 and dyt.alpha.numel() == 1
    torch.testing.assert_close(dyt.weight.detach(), torch.ones(8))
    torch.testing.assert_close(dyt.bias.detach(), torch.zeros(8))
    with torch.no_grad():
        dyt.alpha.fill_(1.7)
        dyt.weight.copy_(torch.randn(8))
        dyt.bias.copy_(torch.randn(8))
    x = torch.randn(2, 5, 8) * 3
    torch.testing.assert_close(dyt(x), dyt.weight * torch.tanh(1.7 * x) + dyt.bias)


# Lion


def test_lion_moves_every_weight_by_lr_times_the_sign() -> None:
    p0 = torch.tensor([1.0, -2.0, 0.5, 3.0])
    param = torch.nn.Parameter(p0.clone())
    lion = Lion([param], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    g1 = torch.tensor([0.3, -1e-6, 0.0, -4.0])
    param.grad = g1.clone()
    lion.step()
    decayed = p0 * (1 - 0.1 * 0.5)
    torch.testing.assert_close(param.detach(), decayed - 0.1 * torch.sign(g1))  # momentum starts at zero
    # the second step's sign is of 0.9 m + 0.1 g, m = 0.01 g1: the momentum can outvote the gradient
    g2 = torch.tensor([-0.1, 1.0, 1.0, 0.01])
    param.grad = g2.clone()
    expected = param.detach() * (1 - 0.05) - 0.1 * torch.sign(0.9 * 0.01 * g1 + 0.1 * g2)
    lion.step()
    torch.testing.assert_close(param.detach(), expected)
    torch.testing.assert_close(lion.state[param]["exp_avg"], 0.99 * 0.01 * g1 + 0.01 * g2)


def test_lion_decays_matrices_only_and_learns() -> None:
    torch.manual_seed(0)
    cfg = Config(vocab_size=11, n_layer=2, n_embd=16, n_head=2, block_size=16, optimizer="lion", lr=3e-3)
    model = GPT(cfg)
    lion = components.optimizer.build("lion", model, cfg, torch.device("cpu"))
    assert [group["weight_decay"] for group in lion.param_groups] == [cfg.weight_decay, 0.0]
    assert all(p.dim() < 2 for p in lion.param_groups[1]["params"])
    ids = torch.arange(17).remainder(11).repeat(4, 1)  # a pattern to learn
    losses = []
    for _ in range(30):
        loss = model(ids[:, :-1], ids[:, 1:])[1]
        losses.append(loss.item())
        loss.backward()
        lion.step()
        lion.zero_grad(set_to_none=True)
    assert losses[-1] < losses[0] / 2


def test_the_lion_variant_trades_lr_for_weight_decay_against_adamw() -> None:
    registry = discover()
    for preset in PRESETS.values():
        lion = registry.get("lion").configure(preset.config())
        adamw = registry.get("adamw").configure(preset.config())
        assert lion.optimizer == "lion"
        assert lion.lr == pytest.approx(adamw.lr / 3)
        assert lion.lr * lion.weight_decay == pytest.approx(adamw.lr * adamw.weight_decay)


# accounting

V, L, C, T = 65, 3, 48, 32


def hand_flops(weights: int, keys_per_layer: list[int]) -> int:
    """6 FLOPs per matmul weight per token; per layer 2 * 2 C FLOPs forward per key a query
    attends to (q k^T and att v), 3x with the backward."""
    return 6 * weights + sum(3 * 4 * C * keys for keys in keys_per_layer)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_grouped_attention_params_and_flops_equal_a_hand_count(kv_heads: int) -> None:
    cfg = Config(vocab_size=V, n_layer=L, n_head=4, n_embd=C, block_size=T, n_kv_head=kv_heads)
    D = C // 4
    weights = L * (C * C + 2 * kv_heads * D * C + C * C + 8 * C * C) + V * C  # q, k and v, output, MLP; head
    model = GPT(cfg)
    assert flops_per_token(model) == hand_flops(weights, [T] * L)
    gains = L * 2 * C + C  # two LayerNorms a block, one final
    assert model.num_params() == weights + V * C + gains  # the embedding too


def test_windowed_layers_are_charged_their_windows_keys() -> None:
    cfg = Config(vocab_size=V, n_layer=L, n_head=4, n_embd=C, block_size=T, window=8, window_pattern="S")
    weights = L * 12 * C * C + V * C
    assert flops_per_token(GPT(cfg)) == hand_flops(weights, [8, 8, T])  # the last layer is full
    assert flops_per_token(GPT(cfg.replace(window_pattern="L"))) == hand_flops(weights, [T] * L)


def test_qk_norm_gains_and_dyt_are_not_matmul_weights() -> None:
    cfg = Config(vocab_size=V, n_layer=L, n_head=4, n_embd=C, block_size=T)
    baseline = GPT(cfg)
    qk = GPT(cfg.replace(qk_norm=True))
    assert qk.num_params() == baseline.num_params() + L * 2 * (C // 4)
    assert flops_per_token(qk) == flops_per_token(baseline) == hand_flops(L * 12 * C * C + V * C, [T] * L)
    assert flops_per_token(GPT(cfg.replace(norm="dyt"))) == flops_per_token(baseline)


def test_geglu_flops_count_its_three_matrices() -> None:
    cfg = Config(vocab_size=V, n_layer=L, n_head=4, n_embd=C, block_size=T, mlp="geglu")
    hidden = geglu_hidden_size(C)
    assert hidden == 128  # 8 * 48 / 3 exactly
    assert flops_per_token(GPT(cfg)) == hand_flops(L * (4 * C * C + 3 * C * hidden) + V * C, [T] * L)


# configuration and variants


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_kv_head": 3}, r"n_kv_head \(3\) must divide n_head \(4\)"),
        ({"window": 64}, "window must be in 1..block_size-1"),
        ({"window": 4, "window_pattern": "SLX"}, "window_pattern is a string of S"),
        ({"position": "learned", "rope_fraction": 0.5}, "rope_fraction applies to rotary positions"),
        ({"position": "alibi", "rope_base": 500.0}, "rope_base applies to rotary positions"),
        ({"rope_base": 1.0}, "rope_base must be > 1"),
        ({"rope_fraction": 0.01}, "rotate at least 2"),
    ],
)
def test_bad_settings_say_what_to_change(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(**changes)


def test_the_keys_parse_from_set_and_default_to_the_baseline() -> None:
    cfg = Config().with_overrides(["n_kv_head=2", "qk_norm=true", "window=16", "window_pattern=SSSL",
                                   "rope_base=500", "rope_fraction=0.5"])  # fmt: skip
    assert (cfg.kv_heads, cfg.qk_norm, cfg.window, cfg.window_pattern) == (2, True, 16, "SSSL")
    assert (cfg.rope_base, cfg.rope_dims) == (500.0, 16)
    assert Config().kv_heads == Config().n_head
    baseline = GPT(Config())
    assert all(block.attn.window == 0 and block.attn.q_norm is None for block in baseline.blocks)


@pytest.mark.parametrize("preset", ["cpu-fast", "reference", pytest.param("gpu-fast", marks=pytest.mark.slow)])
def test_every_zoo_variant_trains_a_step_under_every_preset_from_two_layers(preset: str) -> None:
    registry = discover()
    for name in ZOO:
        assert registry.get(name).description
        cfg = registry.get(name).configure(PRESETS[preset].config()).replace(n_layer=2, batch_size=2, compile="false")
        assert cfg.diff(PRESETS[preset].config())  # it changes something
        torch.manual_seed(0)
        model = GPT(cfg)
        optimizer = components.optimizer.build(cfg.optimizer, model, cfg, torch.device("cpu"))
        ids = torch.randint(cfg.vocab_size, (2, cfg.block_size + 1))
        loss = model(ids[:, :-1], ids[:, 1:])[1]
        loss.backward()
        optimizer.step()
        assert math.isfinite(loss.item())
        assert all(torch.isfinite(p).all() for p in model.parameters()), name
