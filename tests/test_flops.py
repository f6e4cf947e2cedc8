"""FLOPs that count what runs (minigpt.flops): each term against a hand count, Muon's
Newton-Schulz count against torch's own FLOP counter, and --max-flops charging a variant whose
optimizer works twice as hard with fewer tokens, end to end through results.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from minigpt import components
from minigpt.components.muon import newton_schulz
from minigpt.config import Config
from minigpt.flops import count_flops, newton_schulz_flops, norm_flops, optimizer_flops
from minigpt.measure import flops_per_token
from minigpt.model import GPT
from tests.conftest import SHAKESPEARE, TINY_SET, run_cli

V, L, H, C, T, B = 65, 3, 4, 48, 32, 8
D = C // H


def config(**changes: object) -> Config:
    return Config(vocab_size=V, n_layer=L, n_head=H, n_embd=C, block_size=T, batch_size=B, **changes)


def test_matmuls_and_the_model_count_agree_and_attention_is_the_whole_square_in_every_layer() -> None:
    count = count_flops(config())
    weights = L * 12 * C * C + V * C  # q, k, v, output, the MLP's two 4C matrices; the head
    assert count.matmuls == 6 * weights
    assert count.attention == L * 3 * 2 * 2 * C * T  # q k^T and att v, 2 C per key, 3x with the backward
    assert count.model_per_token == count.matmuls + count.attention == flops_per_token(GPT(config()))


def test_a_window_saves_model_flops_but_not_the_flops_the_masked_kernel_computes() -> None:
    full, windowed = count_flops(config()), count_flops(config(window=8, window_pattern="S"))
    assert windowed.model_per_token == full.model_per_token - 2 * 12 * C * (T - 8)  # two windowed layers
    assert windowed.attention == full.attention and windowed.total_per_step == full.total_per_step


@pytest.mark.parametrize(
    ("changes", "per_token"),
    [
        ({}, 3 * 6 * (2 * L + 1) * C),  # two LayerNorms a block and a final one, no bias: 6 FLOPs an element
        ({"bias": True}, 3 * 7 * (2 * L + 1) * C),  # the bias: one more
        ({"norm": "rmsnorm"}, 3 * 4 * (2 * L + 1) * C),
        ({"norm": "dyt"}, 3 * 4 * (2 * L + 1) * C),
        ({"qk_norm": True}, 3 * 6 * (2 * L + 1) * C + 3 * 4 * L * (H + H) * D),  # RMSNorm of every q and k head
        ({"qk_norm": True, "n_kv_head": 1}, 3 * 6 * (2 * L + 1) * C + 3 * 4 * L * (H + 1) * D),
        ({"block": "sandwich"}, 3 * 6 * (4 * L + 1) * C),  # two more norms a block
    ],
)
def test_norms_cost_what_they_normalize(changes: dict, per_token: int) -> None:
    assert count_flops(config(**changes)).norms == per_token


def test_norm_count_does_not_depend_on_the_device_it_is_counted_on() -> None:
    cfg = config(qk_norm=True)
    assert norm_flops(GPT(cfg), cfg) == count_flops(cfg).norms


@pytest.mark.parametrize(("rows", "cols", "steps"), [(8, 24, 5), (24, 8, 5), (16, 16, 3)])
def test_newton_schulz_count_matches_a_hand_count_and_torch_flop_counter(rows: int, cols: int, steps: int) -> None:
    m, n = min(rows, cols), max(rows, cols)
    matmul = steps * (2 * m * m * n + 2 * m * m * m + 2 * m * m * n)  # x x^T, G G, (b G + c G G) x
    elementwise = 3 * m * n + steps * (3 * m * m + 3 * m * n)  # the norm; the two scaled sums
    assert newton_schulz_flops(rows, cols, steps) == matmul + elementwise
    with FlopCounterMode(display=False) as counter:  # torch counts matrix products only
        newton_schulz(torch.randn(2, rows, cols), (3.4445, -4.775, 2.0315), steps, 1e-7, torch.float32)
    assert counter.get_total_flops() == 2 * matmul  # a stack of two matrices


def test_adamw_step_counts_its_update_its_decay_and_the_clipping() -> None:
    cfg = config(optimizer="adamw", weight_decay=0.1, grad_clip=1.0)
    model = GPT(cfg)
    optimizer = components.optimizer.build("adamw", model, cfg, torch.device("cpu"))
    matrices = sum(p.numel() for p in model.parameters() if p.dim() >= 2)
    vectors = sum(p.numel() for p in model.parameters() if p.dim() < 2)
    assert optimizer_flops(optimizer) == 14 * matrices + 13 * vectors  # decay on matrices only
    assert optimizer_flops(optimizer, grad_clip=1.0) == 14 * matrices + 13 * vectors + 3 * (matrices + vectors)
    assert count_flops(cfg).optimizer == optimizer_flops(optimizer, 1.0)


@pytest.mark.parametrize(("split", "qkv_shapes"), [("qkv", [(C, C)] * 3), ("fused", [(3 * C, C)])])
def test_muon_step_counts_newton_schulz_on_the_matrices_it_orthogonalizes(split: str, qkv_shapes: list) -> None:
    cfg = config(optimizer="muon", muon_split=split, weight_decay=0.1, grad_clip=0.0)
    model = GPT(cfg)
    hidden = L * 12 * C * C
    rest = model.num_params() - hidden
    shapes = L * [*qkv_shapes, (C, C), (4 * C, C), (C, 4 * C)]  # attention's, its output, the MLP's
    ns = sum(newton_schulz_flops(rows, cols, 5) for rows, cols in shapes)
    assert not cfg.tie_weights
    adamw_rest = 14 * 2 * V * C + 13 * (rest - 2 * V * C)  # the embedding and the head (decayed), the gains
    assert count_flops(cfg).optimizer == 9 * hidden + ns + adamw_rest  # momentum, Nesterov, decay, update


def test_muon_arithmetic_is_a_real_share_of_the_default_step() -> None:
    count = count_flops(config(optimizer="muon"))
    adamw = count_flops(config(optimizer="adamw"))
    assert count.total_per_step > adamw.total_per_step
    assert count.model_per_token == adamw.model_per_token  # model FLOPs do not see the optimizer
    assert 0.05 < count.optimizer / count.total_per_step < 0.5


DOUBLE_NS = """
from minigpt import variant
from minigpt.components.muon import BatchedMuon
from minigpt.components.optimizers import OptimizerGroup, adamw, build_muon
from minigpt.components.registries import optimizer


@optimizer.register("muon-ns10")
def build(model, cfg, device):
    group = build_muon(model, cfg, device)
    for child in group.optimizers:
        for params in child.param_groups:
            if "ns_steps" in params:
                params["ns_steps"] = 10  # twice the default's Newton-Schulz iterations
    return group


@variant("muon-ns10", "Muon with twice the Newton-Schulz iterations")
def muon_ns10(cfg):
    return cfg.replace(optimizer="muon-ns10")
"""


def test_a_variant_with_twice_the_optimizer_work_costs_more_per_step_and_trains_fewer_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    plugin = tmp_path / "double.py"
    plugin.write_text(DOUBLE_NS)
    command = ["run", "--devices", "cpu", "--data", str(SHAKESPEARE), "--out", str(tmp_path / "run"), "--quiet",
               "--no-speed", "--no-report", *TINY_SET, "--set", "optimizer=muon", "--variants", "baseline,muon-ns10",
               "--plugins", str(plugin), *["--seeds", "0"], "--max-flops", "2e8"]  # fmt: skip
    code, _, err = run_cli(command, monkeypatch, capsys)
    assert code == 0, err
    from minigpt.report import write_report

    write_report(tmp_path / "run", tmp_path / "report")
    with open(tmp_path / "report" / "results.csv") as handle:
        rows = {row["variant"]: row for row in csv.DictReader(handle)}
    base, double = rows["baseline"], rows["muon-ns10"]
    assert float(double["optimizer_flops_per_step"]) > 1.5 * float(base["optimizer_flops_per_step"])
    assert float(double["total_flops_per_step"]) > float(base["total_flops_per_step"])
    assert float(double["total_flops_per_token"]) > float(base["total_flops_per_token"])
    assert float(double["flops_per_token"]) == float(base["flops_per_token"])  # the same model
    tokens_per_step = 4 * 16  # TINY_SET's batch x block
    steps = {name: int(float(row["steps"])) for name, row in rows.items()}
    assert steps["muon-ns10"] < steps["baseline"]
    for row in rows.values():  # each spent its budget of total FLOPs, to within a step
        step_flops = float(row["total_flops_per_token"]) * tokens_per_step
        assert 2e8 - step_flops < float(row["total_flops"]) <= 2e8 * (1 + 1e-9)
        assert float(row["model_flops"]) < float(row["total_flops"])


def test_a_configuration_the_count_cannot_build_leaves_the_total_empty_not_the_trial_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from minigpt import flops

    def unbuildable(cfg: Config) -> None:
        raise RuntimeError("a component with no meta kernel")

    monkeypatch.setattr(flops, "count_flops", unbuildable)
    fields = flops.total_fields(config())
    assert set(fields) == {"total_flops_per_token", "total_flops_per_step", "optimizer_flops_per_step"}
    assert all(value is None for value in fields.values())


def test_the_fair_report_charges_total_flops_where_recorded_and_model_flops_for_older_runs() -> None:
    import pandas as pd

    from minigpt.report.fair import flops_kind, flops_per_token

    new = pd.DataFrame({"flops_per_token": [10.0, 12.0], "total_flops_per_token": [13.0, 15.0]})
    assert list(flops_per_token(new)) == [13.0, 15.0] and flops_kind(new).startswith("total")
    old = new.assign(total_flops_per_token=[13.0, None])  # one trial from before the count: model FLOPs for all
    assert list(flops_per_token(old)) == [10.0, 12.0] and flops_kind(old) == "model FLOPs"
    assert list(flops_per_token(new.drop(columns="total_flops_per_token"))) == [10.0, 12.0]
