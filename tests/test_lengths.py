"""Length generalization (`run --eval-lengths`): every position scheme that can extend places
tokens past block_size exactly as a model built for the longer length would; one that cannot
says so; the two protocols score what they promise; a sweep records the losses per length."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from minigpt import components
from minigpt.config import Config
from minigpt.data import Corpus
from minigpt.evaluate import Evaluator
from minigpt.generate import GenerationError, generate
from minigpt.lengths import SPAN_WINDOWS, evaluate_lengths
from minigpt.model import GPT
from minigpt.precision import Precision
from minigpt.train import Budget, Trainer

from .conftest import SHAKESPEARE, TINY, TINY_SET, run_cli

FP32 = Precision.resolve("fp32", torch.device("cpu"))


def tiny(**changes: object) -> Config:
    return Config(**{**TINY, "vocab_size": 11, "dropout": 0.0, **changes})


def extends(position: str) -> bool:
    return GPT(tiny(position=position)).max_length is None


@pytest.mark.parametrize("position", components.position.names())
def test_past_block_size_a_model_scores_as_one_built_for_the_longer_length(position: str) -> None:
    torch.manual_seed(0)
    trained_at = GPT(tiny(position=position)).eval()  # block_size 16
    if not extends(position):
        with pytest.raises(ValueError, match="block_size = 16 rows"):
            trained_at(torch.zeros(1, 17, dtype=torch.long))
        return
    built_long = GPT(tiny(position=position, block_size=64)).eval()
    built_long.load_state_dict(trained_at.state_dict())  # a scheme that extends has no length-sized parameter
    idx = torch.randint(11, (2, 64))
    torch.testing.assert_close(trained_at(idx)[0], built_long(idx)[0], rtol=0, atol=1e-6)


class CountingModel(nn.Module):
    """A stand-in whose loss falls with context: on text where token t is followed by t+1, it
    predicts the next token with confidence growing with the position in its window (logit p/4 on
    the right one at position p), so the loss at position p is log(1 + (V-1) e^(-p/4)) exactly."""

    def __init__(self, block_size: int, vocab: int) -> None:
        super().__init__()
        self.cfg = tiny(block_size=block_size, vocab_size=vocab)
        self.max_length = None

    def forward(self, idx: torch.Tensor) -> tuple[torch.Tensor, None]:
        positions = torch.arange(idx.size(1), dtype=torch.float32) / 4
        logits = torch.zeros(*idx.shape, self.cfg.vocab_size)
        logits.scatter_(-1, ((idx + 1) % self.cfg.vocab_size)[..., None], positions.expand_as(idx)[..., None])
        return logits, None


def position_loss(position: int, vocab: int) -> float:
    return math.log(1 + (vocab - 1) * math.exp(-position / 4))


def test_the_two_protocols_score_what_they_promise_and_differ_where_context_matters() -> None:
    block, vocab = 8, 5
    val = torch.arange(SPAN_WINDOWS * 4 * block + 1) % vocab
    result = evaluate_lengths(CountingModel(block, vocab), val, (1, 2, 4), FP32, torch.device("cpu"))
    assert result.stride == block // 2
    for multiple in (1, 2, 4):
        length = block * multiple
        every_position = sum(position_loss(p, vocab) for p in range(length)) / length
        last_stride = sum(position_loss(p, vocab) for p in range(length - result.stride, length)) / result.stride
        assert result.non_overlapping[multiple] == pytest.approx(every_position, rel=1e-4)
        assert result.sliding[multiple] == pytest.approx(last_stride, rel=1e-4)
        assert result.sliding[multiple] < result.non_overlapping[multiple]  # every scored token saw more context
    assert result.per_position == pytest.approx([position_loss(p, vocab) for p in range(4 * block)], rel=1e-4)


@pytest.fixture(scope="module")
def short_corpus() -> Corpus:
    """A corpus whose validation split is shorter than the evaluated span, so the span is all of it."""
    text = SHAKESPEARE.read_text(encoding="utf-8")[:5_000]
    return Corpus.from_text(text, "short")


@pytest.mark.parametrize("position", components.position.names())
def test_a_trained_model_has_a_loss_per_length_or_says_why_not(position: str, short_corpus: Corpus) -> None:
    cfg = tiny(position=position, vocab_size=short_corpus.tokenizer.vocab_size, eval_batches=0, eval_interval=5)
    trainer = Trainer(cfg, short_corpus, "cpu", 0, Budget(max_steps=5))
    list(trainer.run())
    model = trainer.model
    result = evaluate_lengths(model, short_corpus.val, (1, 2, 4), FP32, torch.device("cpu"))
    assert set(result.non_overlapping) == ({1, 2, 4} if extends(position) else {1})
    assert set(result.sliding) == set(result.non_overlapping)
    assert all(math.isfinite(loss) for loss in [*result.non_overlapping.values(), *result.sliding.values()])
    if not extends(position):
        assert set(result.not_applicable) == {2, 4} and "block_size = 16 rows" in result.not_applicable[4]
        assert result.fields()["val_loss_at_4x"] is None
    if position == "rope":  # at the trained length, the per-position mean is the ordinary whole-split loss
        evaluator = Evaluator(short_corpus.val, trainer.cfg, torch.device("cpu"), FP32)
        at_block = evaluate_lengths(model, short_corpus.val, (1,), FP32, torch.device("cpu"))
        assert sum(at_block.per_position) / 16 == pytest.approx(evaluator.whole_split(model), rel=1e-5)


def test_generation_sees_past_block_size_only_where_positions_extend() -> None:
    torch.manual_seed(0)
    rope = GPT(tiny())
    long = generate(rope, [1, 2, 3], max_new_tokens=40, context=48)
    assert long.shape == (1, 43)
    plain = generate(rope, [1, 2, 3], max_new_tokens=40, context=48, use_cache=False)
    assert torch.equal(long, plain)  # the cache sized for the context gives the plain loop's tokens
    with pytest.raises(GenerationError, match="cannot see 48 tokens: learned positions have a table"):
        generate(GPT(tiny(position="learned")), [1, 2, 3], max_new_tokens=4, context=48)


@pytest.mark.slow
def test_a_sweep_records_each_length_and_its_report_compares_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run, report = tmp_path / "run", tmp_path / "report"
    command = ["run", "--devices", "cpu", "--data", str(SHAKESPEARE), "--out", str(run), "--quiet", "--no-speed",
               "--no-report", "--seeds", "0,1", *TINY_SET, "--variants", "baseline,learned-pos,alibi",
               "--max-steps", "5", "--eval-lengths", "1,2"]  # fmt: skip
    code, _, err = run_cli(command, monkeypatch, capsys)
    assert code == 0, err
    code, _, err = run_cli(["report", str(run), "--out", str(report)], monkeypatch, capsys)
    assert code == 0, err
    rope = json.loads((run / "trials/baseline--cpu--s0/trial.json").read_text())
    learned = json.loads((run / "trials/learned-pos--cpu--s0/trial.json").read_text())
    assert rope["val_loss_at_2x"] > 0 and rope["val_loss_at_2x_sliding"] > 0
    assert learned["val_loss_at_1x"] > 0 and learned["val_loss_at_2x"] is None
    assert "learned positions" in learned["length_eval"]["not_applicable"]["2"]
    assert json.loads((run / "sweep.json").read_text())["eval_lengths"] == [1, 2]

    results = pd.read_csv(report / "results.csv")
    assert {"val_loss_at_1x", "val_loss_at_2x", "val_loss_at_2x_sliding"} <= set(results.columns)
    markdown = (report / "report.md").read_text()
    section = markdown[markdown.index("## Length generalization") :]
    assert "Loss at each length on cpu, sliding windows" in section
    assert "| alibi | " in section and "learned-pos from 2x on: learned positions have a table" in section
    assert (
        "| baseline | " in section and "(reference)" in section
    )  # a scored trial reads as a number, not "not applicable"
    assert (report / "loss_by_position.png").is_file() and (report / "loss_by_length.png").is_file()


def test_eval_lengths_must_be_whole_multiples(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(["run", "--eval-lengths", "1,x", "--devices", "cpu"], monkeypatch, capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        "error: --eval-lengths expects whole multiples of block_size such as 1,2,4, got '1,x'"
    ]
