"""Muon by role, not by module layout: attention's query, key and value projections are the
same logical matrices whether they live in one fused c_attn (sdpa, manual) or in one module
per head (looped), so the same weights get the same update under every implementation; which
logical split Muon uses is the `muon_split` key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from minigpt import components
from minigpt.components import muon as muon_module
from minigpt.components.muon import BatchedMuon
from minigpt.components.optimizers import OptimizerGroup, muon_matrices
from minigpt.config import MUON_SPLITS, Config, ConfigError
from minigpt.model import GPT

from .conftest import ONE_SEED, TINY_SET, cli

VOCAB = 11
LAYOUTS = ("sdpa", "manual", "looped")
SETTINGS = {"lr": 0.02, "weight_decay": 0.1, "momentum": 0.95, "adjust_lr_fn": "match_rms_adamw"}


def tiny(**changes: object) -> Config:
    base = {"n_layer": 2, "n_head": 4, "n_embd": 16, "block_size": 8, "batch_size": 3, "vocab_size": VOCAB}
    return Config(**base, optimizer="muon", **changes)


def batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    ids = [torch.randint(VOCAB, (3, 9), generator=generator) for _ in range(steps)]
    return [(t[:, :-1], t[:, 1:]) for t in ids]


def copy_roles(source: GPT, target: GPT) -> None:
    """Give `target` the weights of `source`, each head's q, k, v rows moved to wherever the
    target's layout keeps them; every other parameter has the same name in both."""
    moved = set()
    with torch.no_grad():
        for mine, theirs in zip(source.blocks, target.blocks, strict=True):
            heads, their_heads = mine.attn.projection_heads(), theirs.attn.projection_heads()
            for role in heads:
                for (p, a, b), (q, c, d) in zip(heads[role], their_heads[role], strict=True):
                    q[c:d] = p[a:b]
                    moved |= {id(p), id(q)}
        theirs_by_name = dict(target.named_parameters())
        for name, p in source.named_parameters():
            if id(p) not in moved:
                theirs_by_name[name].copy_(p)


def trained(model: GPT, cfg: Config, steps: int = 3) -> GPT:
    optimizer = components.optimizer.build("muon", model, cfg, torch.device("cpu"))
    optimizer.optimizers[0].ns_dtype = torch.float32  # one rounding on every CPU
    for x, y in batches(steps):
        model(x, y)[1].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model


def as_sdpa(model: GPT, cfg: Config) -> dict[str, torch.Tensor]:
    """`model`'s weights in the sdpa layout, to compare layouts parameter by parameter."""
    sdpa = GPT(cfg.replace(attention="sdpa"))
    copy_roles(model, sdpa)
    return {name: p.detach().clone() for name, p in sdpa.named_parameters()}


@pytest.mark.parametrize("split", MUON_SPLITS)
@pytest.mark.parametrize("kv_heads", [0, 2])  # every head its own keys, and grouped-query
def test_the_same_weights_get_the_same_update_under_every_attention_layout(split: str, kv_heads: int) -> None:
    cfg = tiny(muon_split=split, n_kv_head=kv_heads)
    torch.manual_seed(0)
    start = GPT(cfg.replace(attention="sdpa"))
    models = {}
    for layout in LAYOUTS:
        models[layout] = GPT(cfg.replace(attention=layout))
        copy_roles(start, models[layout])
    x, _ = batches(1)[0]
    for layout in LAYOUTS:  # the same function before training: the copy put every row in place
        torch.testing.assert_close(models[layout](x)[0], start(x)[0], atol=1e-5, rtol=1e-4)
    weights = {layout: as_sdpa(trained(models[layout], cfg.replace(attention=layout)), cfg) for layout in LAYOUTS}
    initial = {name: p.detach() for name, p in start.named_parameters()}
    for layout in ("manual", "looped"):
        for name, expected in weights["sdpa"].items():
            assert not torch.equal(expected, initial[name]) or expected.dim() < 2, f"{name} never moved"
            torch.testing.assert_close(weights[layout][name], expected, atol=1e-5, rtol=1e-4, msg=f"{layout} {name}")


def test_each_split_is_a_different_update() -> None:
    """The split matters: were the layouts still seen as they are laid out (the fused c_attn as
    one matrix, looped heads each on their own), the test above would find them apart."""
    torch.manual_seed(0)
    start = GPT(tiny())
    attn = {}
    for split in MUON_SPLITS:
        model = GPT(tiny(muon_split=split))
        model.load_state_dict(start.state_dict())
        attn[split] = trained(model, tiny(muon_split=split), steps=1).blocks[0].attn.c_attn.weight.detach()
    for a, b in (("fused", "qkv"), ("fused", "head"), ("qkv", "head")):
        assert (attn[a] - attn[b]).norm() > 0.05 * (attn[a] - start.blocks[0].attn.c_attn.weight).norm()


def test_rows_of_one_weight_as_logical_matrices_are_updated_as_separate_weights() -> None:
    """A (3m x n) weight split into three (m x n) matrices moves exactly as three separate (m x n)
    weights do: orthogonalized apart, the learning rate scaled by the logical shape."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(12, 8, generator=generator) * 0.1
    grads = [torch.randn(12, 8, generator=generator) for _ in range(3)]
    fused = torch.nn.Parameter(weight.clone())
    parts = [torch.nn.Parameter(w.clone()) for w in weight.split(4)]
    thirds = [[(fused, start, start + 4)] for start in (0, 4, 8)]
    split_opt = BatchedMuon([fused], ns_dtype=torch.float32, matrices=thirds, **SETTINGS)
    apart_opt = BatchedMuon(parts, ns_dtype=torch.float32, **SETTINGS)
    whole = torch.nn.Parameter(weight.clone())
    whole_opt = BatchedMuon([whole], ns_dtype=torch.float32, **SETTINGS)
    for grad in grads:
        fused.grad, whole.grad = grad.clone(), grad.clone()
        for p, g in zip(parts, grad.split(4), strict=True):
            p.grad = g.clone()
        for opt in (split_opt, apart_opt, whole_opt):
            opt.step()
    torch.testing.assert_close(fused.detach(), torch.cat([p.detach() for p in parts]))
    # the same weight as one matrix is another update (had the thirds' learning rate followed the
    # weight's shape, sqrt(12) rather than sqrt(8), the first comparison would fail instead)
    assert not torch.allclose(whole, fused, atol=1e-4)


def test_same_shaped_logical_matrices_take_one_newton_schulz_call(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    real = muon_module.newton_schulz

    def counted(updates: torch.Tensor, *args: object) -> torch.Tensor:
        calls.append(tuple(updates.shape))
        return real(updates, *args)

    monkeypatch.setattr(muon_module, "newton_schulz", counted)
    for layout in ("sdpa", "looped"):
        calls.clear()
        trained(GPT(tiny(attention=layout, muon_split="head")), tiny(attention=layout, muon_split="head"), steps=1)
        # 2 layers x 4 heads x (q, k, v) in one call; c_proj, the MLP's two matrices: one shape each
        assert sorted(calls) == sorted([(24, 4, 16), (2, 16, 16), (2, 64, 16), (2, 16, 64)]), layout


def test_the_split_follows_the_roles_each_attention_declares() -> None:
    model = GPT(tiny(n_kv_head=2))
    shapes = {}
    for split in MUON_SPLITS:
        shapes[split] = sorted(sum(b - a for _, a, b in m) for m in muon_matrices(model, split))
    # per layer: q 4 heads x 4 rows, k and v 2 heads x 4 rows each
    assert shapes == {"fused": [32, 32], "qkv": [8, 8, 8, 8, 16, 16], "head": [4] * 16}


def test_the_muon_step_reads_nothing_back_to_the_host() -> None:
    """On meta tensors any read of a value (.item(), a data-dependent branch) fails: the step
    runs there whole, so on a GPU it queues work without waiting for it."""
    model = GPT(tiny(attention="looped", muon_split="qkv")).to("meta")
    optimizer = components.optimizer.build("muon", model, tiny(muon_split="qkv"), torch.device("meta"))
    muon = optimizer.optimizers[0]
    assert isinstance(optimizer, OptimizerGroup) and muon.matrices
    for group in muon.param_groups:
        for p in group["params"]:
            p.grad = torch.empty_like(p)
    muon.step()


def test_logical_matrices_must_cover_each_weight_once() -> None:
    p = torch.nn.Parameter(torch.zeros(8, 4))
    for matrices in ([[(p, 0, 4)]], [[(p, 0, 4)], [(p, 0, 4)], [(p, 4, 8)]], [[(p, 0, 6)], [(p, 4, 8)]]):
        with pytest.raises(ValueError, match="exactly once"):
            BatchedMuon([p], matrices=matrices, **SETTINGS)
    with pytest.raises(ValueError, match="does not update"):
        BatchedMuon([p], matrices=[[(torch.nn.Parameter(torch.zeros(2, 4)), 0, 2)]], **SETTINGS)


def test_muon_split_is_a_checked_config_key() -> None:
    assert Config().muon_split == "fused"
    assert Config().with_overrides(["muon_split=head"]).muon_split == "head"
    with pytest.raises(ConfigError, match="muon_split must be one of fused\\|qkv\\|head"):
        Config().with_overrides(["muon_split=rows"])


@pytest.mark.slow
def test_set_muon_split_reaches_trial_json(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = cli("run", "--devices", "cpu", "--max-steps", "2", *ONE_SEED, *TINY_SET, "--set", "muon_split=qkv",
               "--no-speed", "--no-report", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    trial = json.loads((out / "trials" / "baseline--cpu--s0" / "trial.json").read_text())
    assert trial["config"]["muon_split"] == "qkv"
