"""Outside plugins reach every level: a configuration change, a new attention class and a new
block layout, each a file of at most 15 lines of code shown whole in README.md and passed with
--plugins, train in one sweep; a plugin whose component returns the wrong shape fails its own
trial in one line naming its file and what was expected, and the sweep goes on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import ONE_SEED, ROOT, SHAKESPEARE, TINY_SET, run_cli


def readme_levels() -> dict[str, str]:
    """The three files under README.md's "Writing a variant", in order: a configuration change, a
    new attention class, a new block layout. The README shows what this test trains, so a level
    cut from it fails here."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## Writing a variant\n")[1].split("\n## ")[0]
    files = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(files) == 3, f"README's Writing a variant shows {len(files)} Python files, not the three levels"
    return dict(zip(("configuration.py", "attention.py", "block.py"), files, strict=True))


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


@pytest.mark.parametrize(("name", "variant"), [("configuration.py", "wide-shallow"), ("attention.py", "cosine-attn"), ("block.py", "mlp-first")])  # fmt: skip
@pytest.mark.usefixtures("scratch_registries")  # what the file registers is gone after the test
def test_each_level_of_plugin_fits_in_15_lines_of_code(tmp_path: Path, name: str, variant: str) -> None:
    """Each file is a whole plugin: loaded as --plugins loads it, it adds its variant, whose model
    builds and trains a step, and the level it reaches is the one it names."""
    import torch

    from minigpt.config import Config
    from minigpt.model import GPT
    from minigpt.variants import discover

    from .conftest import TINY

    text = readme_levels()[name]
    assert len([line for line in text.splitlines() if line.strip()]) <= 15  # lines of code
    path = tmp_path / name
    path.write_text(text)
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
@pytest.mark.usefixtures("scratch_registries")
def test_plugins_at_every_level_train_and_a_wrong_shape_fails_only_its_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for name, text in {**readme_levels(), "broken.py": WRONG_SHAPE}.items():
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
