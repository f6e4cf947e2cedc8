"""The skeleton's extension points and the variants built on them, each checked against the
property it claims: block layouts compute their formulas, the residual streams carry what
they say with learned weights, the soft cap bounds the logits, z-loss adds its term, zero-init
projections are zero at step 0, the schedules have their shapes; parameter counts and FLOPs
per token equal hand counts; bad settings fail in one line."""

from __future__ import annotations

import pytest
import torch

from minigpt import components
from minigpt.components.contracts import ContractError, check_components
from minigpt.config import Config, ConfigError
from minigpt.measure import flops_per_token
from minigpt.model import GPT
from minigpt.step import TrainStep
from minigpt.train import lr_at
from minigpt.variants import VariantError, discover

V, L, C, T = 65, 3, 48, 32
CFG = Config(vocab_size=V, n_layer=L, n_head=4, n_embd=C, block_size=T)


def randomized(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere, norm gains included, so mixing up two parts shows."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.3)
    return module.eval()


def model_with(**changes: object) -> GPT:
    torch.manual_seed(0)
    return GPT(CFG.replace(**changes)).eval()


def tokens(seed: int = 0) -> torch.Tensor:
    return torch.randint(V, (2, T), generator=torch.Generator().manual_seed(seed))


# block layouts

POSITION = components.position.build("rope", CFG)


def block(layout: str, seed: int = 0) -> torch.nn.Module:
    return randomized(components.block.build(layout, CFG), seed)


def stream(seed: int = 1) -> torch.Tensor:
    return torch.randn(2, T, C, generator=torch.Generator().manual_seed(seed))


def test_pre_norm_is_the_baseline_layout() -> None:
    b, x = block("pre-norm"), stream()
    h = x + b.attn(b.norm_1(x), POSITION, 0, None)
    torch.testing.assert_close(b(x, POSITION, 0, None), h + b.mlp(b.norm_2(h)))


def test_a_parallel_block_adds_attention_and_mlp_of_one_shared_norm() -> None:
    b, x = block("parallel"), stream()
    h = b.norm_1(x)
    torch.testing.assert_close(b(x, POSITION, 0, None), x + b.attn(h, POSITION, 0, None) + b.mlp(h))
    assert not hasattr(b, "norm_2")


def test_a_post_norm_block_normalizes_after_each_residual_sum() -> None:
    b, x = block("post-norm"), stream()
    h = b.norm_1(x + b.attn(x, POSITION, 0, None))
    torch.testing.assert_close(b(x, POSITION, 0, None), b.norm_2(h + b.mlp(h)))
    fresh = components.block.build("post-norm", CFG).eval()  # unit gains: what leaves is normalized
    out = fresh(x * 5 + 3, POSITION, 0, None)
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, T), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(2, T), atol=1e-3, rtol=0)


def test_a_sandwich_block_normalizes_each_sublayer_output_before_adding_it() -> None:
    b, x = block("sandwich"), stream()
    h = x + b.norm_attn_out(b.attn(b.norm_1(x), POSITION, 0, None))
    torch.testing.assert_close(b(x, POSITION, 0, None), h + b.norm_mlp_out(b.mlp(b.norm_2(h))))


# residual streams


def test_x0_skips_start_as_the_plain_stream_and_learn_one_weight_per_layer() -> None:
    plain, x0 = model_with(), model_with(residual="x0")
    assert torch.equal(x0.residual.x0_weights, torch.zeros(L))
    idx = tokens()
    torch.testing.assert_close(x0(idx)[0], plain(idx)[0], rtol=0, atol=0)
    x0(idx, idx)[1].backward()
    assert (x0.residual.x0_weights.grad != 0).all()  # each layer's weight is learned


def test_x0_skips_add_the_weighted_embeddings_to_each_block_input() -> None:
    model, idx = randomized(model_with(residual="x0")), tokens()
    x = x0 = model.wte(idx)
    for layer, b in enumerate(model.blocks):
        x = b(x + model.residual.x0_weights[layer] * x0, model.position, 0, None)
    torch.testing.assert_close(model(idx)[0], model.lm_head(model.norm_f(x)))


@pytest.mark.parametrize("n_layer", [2, 3, 4])
def test_unet_skips_add_each_first_half_output_to_its_mirror_block_input(n_layer: int) -> None:
    model = model_with(residual="unet", n_layer=n_layer)
    assert torch.equal(model.residual.skip_weights, torch.ones(n_layer // 2))  # learned, from 1
    model, idx = randomized(model), tokens()
    weights, outputs = model.residual.skip_weights, []
    x = model.wte(idx)
    for layer, b in enumerate(model.blocks):
        mirror = n_layer - 1 - layer
        if mirror < n_layer // 2:  # a middle block of an odd depth has no mirror
            x = x + weights[mirror] * outputs[mirror]
        x = b(x, model.position, 0, None)
        outputs.append(x)
    torch.testing.assert_close(model(idx)[0], model.lm_head(model.norm_f(x)))


# embeddings


def test_token_shift_adds_a_learned_share_of_the_previous_position() -> None:
    shift = components.embedding.build("token-shift", CFG)
    assert torch.equal(shift.shift, torch.zeros(C))  # starts as the plain embedding
    randomized(shift)
    x = stream()
    out = shift(x, 0, None)
    torch.testing.assert_close(out[:, 0], x[:, 0])
    torch.testing.assert_close(out[:, 1:], x[:, 1:] + shift.shift * x[:, :-1])


# the head


def test_the_soft_cap_bounds_the_logits_by_cap_tanh() -> None:
    plain, capped = randomized(model_with()), model_with(softcap=5.0)
    with torch.no_grad():
        plain.lm_head.weight.mul_(4)  # logits past the cap, short of where tanh rounds to 1
    capped.load_state_dict(plain.state_dict())
    raw, logits = plain(tokens())[0], capped(tokens())[0]
    assert raw.abs().max() > 5
    assert logits.abs().max() < 5
    torch.testing.assert_close(logits, 5.0 * torch.tanh(raw / 5.0))


def test_z_loss_adds_its_weight_times_the_mean_squared_log_normalizer() -> None:
    plain, z = randomized(model_with()), model_with(z_loss=1e-2)
    z.load_state_dict(plain.state_dict())
    idx = tokens()
    logits, loss = plain(idx, idx)
    log_z = torch.logsumexp(logits.view(-1, V), dim=-1)
    torch.testing.assert_close(z(idx, idx)[1], loss + 1e-2 * log_z.square().mean())


def test_a_tied_head_is_the_embedding_matrix() -> None:
    tied = model_with(tie_weights=True)
    assert tied.lm_head.weight is tied.wte.weight


# initialization


def test_zero_init_projections_are_zero_at_step_0_and_each_block_starts_as_the_identity() -> None:
    cfg = discover().get("zero-init-proj").configure(CFG)
    model = TrainStep(cfg, "cpu", seed=0).model
    projections = {n: p for n, p in model.named_parameters() if n.endswith("c_proj.weight")}
    assert len(projections) == 2 * L and all(torch.count_nonzero(p) == 0 for p in projections.values())
    assert all(
        torch.count_nonzero(b.attn.c_attn.weight) and torch.count_nonzero(b.mlp.c_fc.weight) for b in model.blocks
    )
    x = stream()
    for b in model.blocks:
        torch.testing.assert_close(b(x, model.position, 0, None), x, rtol=0, atol=0)


# schedules


def test_the_wsd_schedule_warms_up_holds_then_decays_straight_to_min_lr() -> None:
    cfg = discover().get("wsd-schedule").configure(Config(lr=1.0, min_lr=0.1, warmup_steps=10))
    assert (cfg.schedule, cfg.decay_fraction) == ("wsd", 0.2)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(0.1) and lr_at(cfg, 9, 0.0) == pytest.approx(1.0)
    assert [lr_at(cfg, 50, p) for p in (0.0, 0.5, 0.8)] == [1.0, 1.0, 1.0]  # stable
    assert lr_at(cfg, 50, 0.9) == pytest.approx(0.55)  # halfway down the decay
    assert lr_at(cfg, 50, 1.0) == pytest.approx(0.1) and lr_at(cfg, 50, 1.3) == pytest.approx(0.1)


def test_the_linear_and_constant_schedules() -> None:
    cfg = Config(lr=1.0, min_lr=0.1, warmup_steps=10)
    linear, constant = cfg.replace(schedule="linear"), cfg.replace(schedule="constant")
    assert [lr_at(linear, 50, p) for p in (0.0, 0.5, 1.0)] == pytest.approx([1.0, 0.55, 0.1])
    assert [lr_at(constant, 50, p) for p in (0.0, 0.5, 1.0)] == [1.0, 1.0, 1.0]
    assert lr_at(linear, 4, 0.0) == lr_at(constant, 4, 0.0) == lr_at(cfg, 4, 0.0) == pytest.approx(0.5)


# accounting


def hand_flops(weights: int) -> int:
    """6 FLOPs per matmul weight per token, plus 12 C per key per layer for the scores."""
    return 6 * weights + L * 12 * C * T


MATMULS = L * 12 * C * C + V * C  # per block q, k, v, out (4 C^2) and MLP (8 C^2); the head
GAINS = L * 2 * C + C  # two LayerNorm gains a block, one final


@pytest.mark.parametrize(
    ("name", "extra_params"),
    [
        ("post-norm", 0),
        ("sandwich-norm", L * 2 * C),  # two more norms a block
        ("parallel-block", -L * C),  # one norm a block fewer
        ("x0-skips", L),  # one weight a layer
        ("unet-skips", L // 2),  # one weight a mirrored pair
        ("token-shift", C),  # one share a channel
        ("tied-head", -V * C),  # the head is the embedding
        ("logit-softcap", 0),
        ("z-loss", 0),
        ("zero-init-proj", 0),
        ("wsd-schedule", 0),
    ],
)
def test_params_and_flops_of_the_new_variants_equal_hand_counts(name: str, extra_params: int) -> None:
    model = GPT(discover().get(name).configure(CFG))
    assert model.num_params() == MATMULS + V * C + GAINS + extra_params
    assert flops_per_token(model) == hand_flops(MATMULS)  # scalars, gains and shares are elementwise


# configuration and contracts


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"softcap": -1.0}, "softcap and z_loss must be >= 0"),
        ({"z_loss": -0.1}, "softcap and z_loss must be >= 0"),
        ({"decay_fraction": 0.0}, r"decay_fraction must be in \(0, 1\]"),
        ({"decay_fraction": 1.5}, r"decay_fraction must be in \(0, 1\]"),
    ],
)
def test_bad_settings_say_what_to_change(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(**changes)


@pytest.mark.parametrize("key", [registry.kind for registry in components.CHOSEN_BY_CONFIG])
def test_an_unknown_component_name_fails_when_the_variant_is_configured(key: str) -> None:
    baseline = discover().get("baseline")
    with pytest.raises(VariantError, match=rf"variant 'baseline' .*unknown {key} 'xyzzy'; choose from"):
        baseline.configure(CFG.replace(**{key: "xyzzy"}))


class HalvedMLP(torch.nn.Module):
    """Breaks the contract: returns half the model's width."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : x.size(-1) // 2]


@pytest.mark.usefixtures("scratch_registries")
def test_a_component_of_the_wrong_shape_is_named_with_its_file_and_what_was_expected() -> None:
    components.mlp.register("test-halved")(HalvedMLP)
    model = GPT(CFG.replace(mlp="test-halved"))
    with pytest.raises(ContractError) as error:
        check_components(model)
    message = str(error.value)
    assert message.startswith(f"mlp HalvedMLP from {__file__} returned (1, 2, 24) torch.float32")
    assert message.endswith("expected its input's shape and dtype, (1, 2, 48) torch.float32")
    assert "\n" not in message
    check_components(GPT(CFG))  # the built-ins keep it
