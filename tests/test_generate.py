"""Generation: the KV cache reproduces the plain loop exactly (past block_size too), the
sampling filters keep what they promise, seeds reproduce, and `generate` fails cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minigpt import components
from minigpt.checkpoint import save_checkpoint
from minigpt.cli import main
from minigpt.config import Config
from minigpt.data import CharTokenizer
from minigpt.generate import (
    MATVEC_ROWS,
    Context,
    GenerationError,
    MatvecLinear,
    filter_logits,
    generate,
    matvec_linears,
    sample_text,
    stream,
    top_k_mask,
    top_p_mask,
)
from minigpt.model import GPT
from minigpt.store import RunStore

from .conftest import BLOCK, VOCAB, plain_loop, random_model

POSITIONS = components.position.names()
ATTENTIONS = components.attention.names()


def tiny_model(position: str = "rope", attention: str = "sdpa", seed: int = 0) -> GPT:
    """A random tiny model whose greedy choices never hang on rounding."""
    cfg = Config(
        vocab_size=len(VOCAB), n_layer=2, n_embd=16, n_head=2, block_size=BLOCK, position=position, attention=attention
    )
    return random_model(cfg, seed)


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("position", POSITIONS)
def test_greedy_cached_equals_plain_loop_past_block_size(position: str, attention: str) -> None:
    model = tiny_model(position, attention)
    prompt, steps = [1, 2, 3], 3 * BLOCK  # runs well past block_size
    expected = plain_loop(model, prompt, steps)
    assert generate(model, prompt, steps, temperature=0)[0].tolist() == expected
    assert generate(model, prompt, steps, temperature=0, use_cache=False)[0].tolist() == expected


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("position", POSITIONS)
@torch.no_grad()
def test_cached_logits_match_the_window_forward_at_every_step(position: str, attention: str) -> None:
    model = tiny_model(position, attention, seed=1)
    tokens = torch.randint(len(VOCAB), (2, 2 * BLOCK + 3), generator=torch.Generator().manual_seed(0))
    context = Context(model, tokens[:, :2], use_cache=True)
    logits = context.first_logits()
    for end in range(3, tokens.size(1) + 1):
        window = tokens[:, max(0, end - 1 - BLOCK) : end - 1]
        torch.testing.assert_close(logits, model(window)[0][:, -1], rtol=1e-4, atol=1e-5)
        if end - 1 < BLOCK:
            assert context.cache.length == end - 1  # one position per step, not a recompute
        logits = context.append(tokens[:, end - 1 : end])


def test_top_k_one_equals_greedy() -> None:
    model = tiny_model("alibi")
    greedy = generate(model, [1], 20, temperature=0)
    for seed in range(3):
        assert torch.equal(generate(model, [1], 20, temperature=1.5, top_k=1, seed=seed), greedy)


def test_tiny_top_p_equals_greedy() -> None:
    model = tiny_model("learned")
    greedy = generate(model, [1], 20, temperature=0)
    assert torch.equal(generate(model, [1], 20, temperature=1.5, top_p=1e-6, seed=4), greedy)


@pytest.mark.parametrize(
    ("p", "kept"),
    [
        (0.5, [0]),  # the most likely token alone reaches 0.5
        (0.5001, [0, 2]),
        (0.75, [0, 2]),  # exactly reached: the third is not needed
        (0.76, [0, 2, 1]),
        (0.875, [0, 2, 1]),
        (1.0, [0, 1, 2, 3, 4]),
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(p: float, kept: list[int]) -> None:
    probs = torch.tensor([[0.5, 0.125, 0.25, 0.0625, 0.0625]])
    assert sorted(top_p_mask(probs, p)[0].nonzero().flatten().tolist()) == sorted(kept)


def test_top_p_per_row_and_unsorted_input() -> None:
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
    assert top_p_mask(probs, 0.6).tolist() == [[False, False, True, True], [True, False, False, False]]


def test_top_k_keeps_exactly_k_even_with_ties() -> None:
    logits = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0]])
    assert top_k_mask(logits, 2).sum().item() == 2
    assert top_k_mask(logits, 2)[0, [0, 4]].tolist() == [False, False]
    filtered = filter_logits(torch.tensor([[0.0, 2.0, 1.0, 3.0]]), top_k=2)
    assert torch.isinf(filtered).tolist() == [[True, False, True, False]]


def test_samples_stay_inside_top_k() -> None:
    model = tiny_model("rope")
    prompt = torch.tensor([[1, 2]])
    out = generate(model, prompt[0], 1, temperature=5.0, top_k=3, num_samples=200, seed=0)
    allowed = set(model(prompt)[0][0, -1].topk(3).indices.tolist())
    drawn = set(out[:, -1].tolist())
    assert drawn == allowed  # 200 draws at a high temperature reach all three, and nothing else


def test_same_seed_same_samples_and_batched_cache_matches_plain_loop() -> None:
    model = tiny_model("rope+learned", "manual")
    first = generate(model, [3, 1], 2 * BLOCK, temperature=1.0, num_samples=4, seed=7)
    again = generate(model, [3, 1], 2 * BLOCK, temperature=1.0, num_samples=4, seed=7)
    uncached = generate(model, [3, 1], 2 * BLOCK, temperature=1.0, num_samples=4, seed=7, use_cache=False)
    other = generate(model, [3, 1], 2 * BLOCK, temperature=1.0, num_samples=4, seed=8)
    assert first.shape == (4, 2 + 2 * BLOCK)
    assert torch.equal(first, again) and torch.equal(first, uncached)
    assert not torch.equal(first, other)
    assert len({tuple(row) for row in first.tolist()}) > 1  # the batch rows are separate samples


def test_stream_yields_one_token_per_sample_per_step_and_restores_training_mode() -> None:
    model = tiny_model().train()
    steps = list(stream(model, [1], 5, num_samples=3))
    assert [tuple(s.shape) for s in steps] == [(3,)] * 5
    assert model.training
    assert not any("forward" in vars(m) for m in model.modules())  # the decoding linears are gone again


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("slices", [1, 2, 3])
@pytest.mark.parametrize("shape", [(1, 1, 24), (4, 1, 24), (2, 3, 24), (1, MATVEC_ROWS + 1, 24)])
def test_matvec_linear_computes_what_the_linear_does(bias: bool, slices: int, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(24, 36, bias=bias)
    x = torch.randn(shape)
    with torch.inference_mode():
        torch.testing.assert_close(MatvecLinear(linear, slices)(x), linear(x))


def test_matvec_linears_apply_inside_the_block_only() -> None:
    model = tiny_model()
    x = torch.randn(1, 1, model.cfg.n_embd)
    calls = []
    with torch.inference_mode(), matvec_linears(model):
        linear = model.blocks[0].mlp.c_fc
        plain = linear.forward.plain
        linear.forward.plain = lambda rows: calls.append(rows) or plain(rows)
        linear(x)  # one row: the sliced path, not the plain one
        linear(torch.randn(1, MATVEC_ROWS + 1, model.cfg.n_embd))
    assert len(calls) == 1 and calls[0].size(1) == MATVEC_ROWS + 1
    assert "forward" not in vars(linear)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": -1.0},
        {"top_k": 0},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"num_samples": 0},
        {"max_new_tokens": -1},
    ],
)
def test_bad_sampling_settings_are_refused(kwargs: dict) -> None:
    args = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(GenerationError):
        generate(tiny_model(), [1], **args)


def test_prompt_length_rule() -> None:
    model = tiny_model()
    assert generate(model, list(range(BLOCK)), 2).shape == (1, BLOCK + 2)
    with pytest.raises(GenerationError, match=r"at most 8 \(its context\)"):
        generate(model, [1] * (BLOCK + 1), 2)
    with pytest.raises(GenerationError, match="empty"):
        generate(model, [], 2)
    with pytest.raises(GenerationError, match="one sequence"):
        generate(model, torch.tensor([[1, 2]]), 2)


# --- the command line -------------------------------------------------------------------


def write_checkpoint(directory: Path, seed: int = 0, **meta: object) -> GPT:
    model = tiny_model(seed=seed)
    save_checkpoint(directory, model, CharTokenizer(VOCAB), **meta)
    return model


def write_trial(
    run: Path, variant: str, status: str, best_val_loss: float | None, seed: int = 0, stage: str = "eval"
) -> str:
    trial = f"{variant}--cpu--s0" + ("--lr0.01" if stage != "eval" else "")
    record = {"trial_id": trial, "variant": variant, "status": status, "best_val_loss": best_val_loss, "stage": stage}
    RunStore(run).write_trial(record)
    write_checkpoint(RunStore(run).trial_dir(trial), seed=seed, variant=variant, val_loss=best_val_loss)
    return trial


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["minigpt-bench", "generate", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "sweep"
    write_trial(run, "baseline", "completed", 2.5, seed=0)
    write_trial(run, "alibi", "completed", 2.1, seed=1)
    write_trial(run, "wide", "failed", 1.0, seed=2)  # lower loss, but not completed: never picked
    write_trial(run, "alibi", "completed", 1.5, seed=3, stage="tune-full")  # lower loss, but tuning: never picked
    return run


def test_cli_picks_the_completed_trial_with_the_lowest_loss(run: Path, monkeypatch, capsys) -> None:
    code, out, err = cli(monkeypatch, capsys, "--run", str(run), "--temperature", "0", "--max-new-tokens", "12")
    assert code == 0
    assert "trial alibi--cpu--s0" in err and "2.1000" in err
    expected = tiny_model(seed=1)
    assert out == CharTokenizer(VOCAB).decode(generate(expected, [0], 12, temperature=0)[0]) + "\n"


def test_cli_variant_chooses_among_the_trials(run: Path, monkeypatch, capsys) -> None:
    code, _, err = cli(monkeypatch, capsys, "--run", str(run), "--variant", "baseline", "--max-new-tokens", "3")
    assert code == 0 and "trial baseline--cpu--s0" in err
    code, _, err = cli(monkeypatch, capsys, "--run", str(run), "--variant", "basline")
    assert code == 2 and "did you mean baseline" in err
    code, _, err = cli(monkeypatch, capsys, "--run", str(run), "--variant", "wide")
    assert code == 2 and "no completed trial of variant 'wide'" in err


def test_cli_checkpoint_streams_several_samples(tmp_path: Path, monkeypatch, capsys) -> None:
    model = write_checkpoint(tmp_path / "ckpt", variant="baseline", val_loss=1.5)
    args = ("--checkpoint", str(tmp_path / "ckpt"), "--prompt", "ab", "--max-new-tokens", "10", "--num-samples", "3")
    code, out, err = cli(monkeypatch, capsys, *args, "--seed", "3")
    assert code == 0 and "variant baseline, val loss 1.5000" in err
    ids = generate(model, [1, 2], 10, temperature=0.8, num_samples=3, seed=3)
    assert out == "\n---------------\n".join(CharTokenizer(VOCAB).decode(row) for row in ids) + "\n"
    assert cli(monkeypatch, capsys, *args, "--seed", "3")[1] == out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", "abZ!"], "prompt characters '!', 'Z' not in this model's vocabulary"),
        (["--prompt", "a" * (BLOCK + 1)], "the prompt has 9 characters but this model sees at most 8 (its context)"),
        (["--top-p", "2"], "top_p must be in (0, 1]"),
        (["--variant", "baseline"], "use it with --run"),
    ],
)
def test_cli_prompt_and_option_errors(tmp_path: Path, monkeypatch, capsys, args: list[str], message: str) -> None:
    write_checkpoint(tmp_path / "ckpt")
    code, out, err = cli(monkeypatch, capsys, "--checkpoint", str(tmp_path / "ckpt"), *args)
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_cli_run_errors(tmp_path: Path, monkeypatch, capsys) -> None:
    cases = {
        "missing": (tmp_path / "nothing-here", "does not exist"),
        "empty": (tmp_path / "empty", "holds no trials"),
        "failed": (tmp_path / "failed", "has no completed trial to sample from (found: failed, interrupted)"),
    }
    (tmp_path / "empty").mkdir()
    write_trial(tmp_path / "failed", "baseline", "failed", None)
    write_trial(tmp_path / "failed", "alibi", "interrupted", 2.0)
    for run_dir, message in cases.values():
        code, _, err = cli(monkeypatch, capsys, "--run", str(run_dir))
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_cli_needs_exactly_one_source(run: Path, monkeypatch, capsys) -> None:
    for args in ([], ["--run", str(run), "--checkpoint", str(run / "trials" / "alibi--cpu--s0")]):
        code, _, err = cli(monkeypatch, capsys, *args)
        assert code == 2 and "exactly one of --run RUN_DIR or --checkpoint PATH" in err


@pytest.mark.parametrize("damage", ["weights", "metadata", "missing"])
def test_cli_corrupt_checkpoint(tmp_path: Path, monkeypatch, capsys, damage: str) -> None:
    ckpt = tmp_path / "ckpt"
    write_checkpoint(ckpt)
    if damage == "weights":
        weights = ckpt / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "metadata":
        (ckpt / "model.json").write_text("{not json", encoding="utf-8")
    else:
        (ckpt / "model.safetensors").unlink()
    code, out, err = cli(monkeypatch, capsys, "--checkpoint", str(ckpt))
    assert (code, out) == (2, "")
    assert err.startswith("error: checkpoint") and len(err.strip().splitlines()) == 1


def test_sample_text_matches_generate(tmp_path: Path) -> None:
    model = write_checkpoint(tmp_path / "ckpt")
    text = sample_text(tmp_path / "ckpt", prompt="ha", max_new_tokens=9, temperature=0.7, top_p=0.9, seed=5)
    ids = generate(model, [VOCAB.index("h"), VOCAB.index("a")], 9, temperature=0.7, top_p=0.9, seed=5)
    assert text == CharTokenizer(VOCAB).decode(ids[0])


@pytest.mark.slow
def test_cli_entry_point_loads_plugin_components(tmp_path: Path) -> None:
    """A checkpoint whose position scheme a plugin defines: refused without --plugins, sampled
    with it; stdout carries only the text."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "from minigpt.components import position\n"
        "from minigpt.components.positions import NoPosition\n\n"
        "@position.register('test-plugin-pos')\n"
        "class PluginPosition(NoPosition):\n"
        "    pass\n",
        encoding="utf-8",
    )
    ckpt = tmp_path / "ckpt"
    write_checkpoint(ckpt, variant="plugin")  # RoPE has no weights, so they fit the weightless plugin scheme
    meta = json.loads((ckpt / "model.json").read_text(encoding="utf-8"))
    meta["config"]["position"] = "test-plugin-pos"
    (ckpt / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    command = [sys.executable, "-m", "minigpt.cli", "generate", "--checkpoint", str(ckpt), "--max-new-tokens", "5"]
    refused = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert refused.returncode == 2 and "unknown position 'test-plugin-pos'" in refused.stderr
    assert "--plugins PATH" in refused.stderr
    done = subprocess.run(command + ["--plugins", str(plugin)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout) == 1 + 5 + 1 and done.stdout[0] == "\n"  # prompt, 5 characters, final newline
    assert done.stderr.startswith("sampling from checkpoint")
