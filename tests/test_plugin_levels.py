"""Outside plugins reach every level: a configuration change, a new attention class and a new
block layout, each a file of at most 15 lines passed with --plugins, train in one sweep; a
plugin whose component returns the wrong shape fails its own trial in one line naming its
file and what was expected, and the sweep goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import ONE_SEED, SHAKESPEARE, TINY_SET, run_cli

CONFIGURATION = '''"""wide-shallow: half the layers, each twice as wide."""
from minigpt import variant

@variant("wide-shallow", "half as many layers, twice as wide")
def wide_shallow(cfg):
    return cfg.replace(n_layer=max(1, cfg.n_layer // 2), n_embd=2 * cfg.n_embd)
'''

ATTENTION = """from torch.nn import functional as F
from minigpt import variant
from minigpt.components import attention
from minigpt.components.attentions import CausalSelfAttention, shared_kv

@attention.register("cosine")
class CosineAttention(CausalSelfAttention):
    def attend(self, q, k, v, mask, causal):
        q, k = F.normalize(q, dim=-1), F.normalize(shared_kv(k, self.n_head), dim=-1)
        v = shared_kv(v, self.n_head)  # grouped-query: one copy per query head
        return F.scaled_dot_product_attention(q, k, v, mask, is_causal=causal, scale=10.0)

@variant("cosine-attn", "cosine-similarity attention, scale 10 (Henry et al. 2020)")
def cosine_attn(cfg):
    return cfg.replace(attention="cosine")
"""

BLOCK = '''"""mlp-first: each block runs its MLP before its attention."""
from minigpt import variant
from minigpt.components import block
from minigpt.components.blocks import Block

@block.register("mlp-first")
class MLPFirst(Block):
    def forward(self, x, position, start, cache):
        x = x + self.mlp(self.norm_2(x))
        return x + self.attn(self.norm_1(x), position, start, cache)

@variant("mlp-first", "the MLP before attention in every block")
def mlp_first(cfg):
    return cfg.replace(block="mlp-first")
'''

WRONG_SHAPE = '''"""narrow-mlp: an MLP that forgets to project back to the model's width."""
from torch import nn

from minigpt import variant
from minigpt.components import mlp


@mlp.register("narrow")
class NarrowMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.n_embd // 2)

    def forward(self, x):
        return self.c_fc(x)


@variant("narrow-mlp", "an MLP returning half the width")
def narrow_mlp(cfg):
    return cfg.replace(mlp="narrow")
'''

LEVELS = {"configuration.py": CONFIGURATION, "attention.py": ATTENTION, "block.py": BLOCK}


@pytest.mark.parametrize(("name", "variant"), [("configuration.py", "wide-shallow"), ("attention.py", "cosine-attn"), ("block.py", "mlp-first")])  # fmt: skip
def test_each_level_of_plugin_fits_in_15_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, variant: str
) -> None:
    """Each file is a whole plugin: loaded as --plugins loads it, it adds its variant, whose model
    builds and trains a step, and the level it reaches is the one it names."""
    import torch

    from minigpt.components import attention, block
    from minigpt.config import Config
    from minigpt.model import GPT
    from minigpt.variants import discover

    from .conftest import TINY

    text = LEVELS[name]
    assert len(text.splitlines()) <= 15
    path = tmp_path / name
    path.write_text(text)
    for registry in (attention, block):  # what this file registers is gone after the test
        monkeypatch.setattr(registry, "_factories", dict(registry._factories))
    found = discover([path])
    assert found.get(variant).source == "plugin"
    config = found.get(variant).configure(Config(**TINY, vocab_size=32))
    torch.manual_seed(0)
    model = GPT(config)
    tokens = torch.randint(0, 32, (2, config.block_size))
    logits, loss = model(tokens, tokens)
    assert logits.shape == (2, config.block_size, 32) and torch.isfinite(loss)
    loss.backward()
    expected = {"configuration.py": {"n_layer": 1, "n_embd": 32}, "attention.py": {"attention": "cosine"},
                "block.py": {"block": "mlp-first"}}[name]  # fmt: skip
    assert {key: getattr(config, key) for key in expected} == expected


@pytest.mark.slow
def test_plugins_at_every_level_train_and_a_wrong_shape_fails_only_its_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for name, text in {**LEVELS, "broken.py": WRONG_SHAPE}.items():
        (plugins / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    names = ["wide-shallow", "cosine-attn", "mlp-first", "narrow-mlp"]
    code, _, err = run_cli(["run", "--variants", ",".join(names), "--plugins", str(plugins), "--devices", "cpu",
                            "--max-steps", "10", "--data", str(SHAKESPEARE), "--out", "runs/levels", "--quiet",
                            "--no-report", *ONE_SEED, *TINY_SET], monkeypatch, capsys)  # fmt: skip
    assert code == 1 and err.startswith("error: 1 of 4 trials failed"), err  # the broken plugin's, alone
    trials = {n: json.loads(Path(f"runs/levels/trials/{n}--cpu--s0/trial.json").read_text()) for n in names}
    for name in names[:3]:
        assert trials[name]["status"] == "completed", trials[name].get("error")
        assert trials[name]["best_val_loss"] is not None
    assert trials["cosine-attn"]["changed"] == {"attention": "cosine"}
    assert trials["mlp-first"]["changed"] == {"block": "mlp-first"}
    broken = trials["narrow-mlp"]
    assert broken["status"] == "failed"
    assert "\n" not in broken["error"]
    assert str(plugins / "broken.py") in broken["error"]
    assert "expected its input's shape and dtype" in broken["error"]
