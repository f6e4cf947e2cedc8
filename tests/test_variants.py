"""Variant discovery: built-ins, --plugins files and folders, installed entry points, the
scaffold, and each error a plugin author can make."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from minigpt.config import Config
from minigpt.variants import BUILTIN_DIR, VariantError, discover

from .conftest import ONE_SEED, TINY_SET, cli

BUILTINS = {
    "baseline", "learned-pos", "sinusoidal-pos", "alibi", "nope", "rope+learned", "heads-1", "heads-2",
    "heads-8", "rmsnorm", "relu", "relu2", "swiglu", "attn-manual", "attn-looped", "muon", "adamw", "sgd",
    "dropout-0.1", "dropout-0.2",
}  # fmt: skip

PLUGIN = """
from minigpt import variant

@variant("wide", "twice the width")
def wide(cfg):
    return cfg.replace(n_embd=cfg.n_embd * 2)
"""


def test_builtins_are_found_with_family_and_source() -> None:
    registry = discover()
    assert set(registry.names()) >= BUILTINS
    assert registry.names()[0] == "baseline"
    alibi = registry.get("alibi")
    assert (alibi.family, alibi.source) == ("positions", "built-in")
    assert alibi.configure(Config()).position == "alibi"


def test_a_plugin_file_or_folder_is_found_through_plugins(tmp_path: Path) -> None:
    (tmp_path / "wide.py").write_text(PLUGIN)
    for path in (tmp_path, tmp_path / "wide.py"):
        wide = discover([path]).get("wide")
        assert wide.source == "plugin"
        assert wide.configure(Config()).n_embd == 256


def test_a_local_variants_folder_is_found(tmp_path: Path) -> None:
    (tmp_path / "variants").mkdir()
    (tmp_path / "variants" / "wide.py").write_text(PLUGIN)
    assert discover(cwd=tmp_path).get("wide").source == "local"


def test_an_installed_distribution_is_found_through_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acme_variants.py").write_text(
        PLUGIN.replace("wide", "acme-wide").replace("def acme-wide", "def acme_wide")
    )
    dist_info = tmp_path / "acme_variants-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-variants\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[minigpt_bench.variants]\nacme = acme_variants\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = discover().get("acme-wide")
    assert found.source == "entry point"
    assert "acme_variants" in found.origin


def test_a_plugin_that_fails_to_import_names_its_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.py"
    bad.write_text("from minigpt import variant\n\nx = 1\nraise RuntimeError('boom')\n")
    with pytest.raises(VariantError, match=r"broken\.py failed to import: line 4: RuntimeError: boom"):
        discover([bad])
    bad.write_text("def oops(:\n")
    with pytest.raises(VariantError, match=r"broken\.py failed to import: line 1: SyntaxError"):
        discover([bad])


def test_two_variants_with_one_name_name_both_origins(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(PLUGIN.replace('"wide"', '"alibi"'))
    with pytest.raises(VariantError, match=r"'alibi' is defined twice: in .*positions\.py and in .*mine\.py"):
        discover([tmp_path])


def test_an_unknown_variant_suggests_the_closest_names() -> None:
    with pytest.raises(VariantError, match="did you mean"):
        discover().get("swiglo")


@pytest.mark.slow
def test_a_variant_yielding_an_invalid_config_fails_before_training(tmp_path: Path) -> None:
    (tmp_path / "odd.py").write_text(PLUGIN.replace("n_embd=cfg.n_embd * 2", "n_head=3"))
    result = cli(
        "run",
        "--variants",
        "wide",
        *ONE_SEED,
        "--plugins",
        str(tmp_path),
        "--max-steps",
        "2",
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "variant 'wide'" in result.stderr and "divisible by n_head" in result.stderr
    assert not (tmp_path / "run" / "trials").exists()


@pytest.mark.slow
def test_variants_list_json_and_show(tmp_path: Path) -> None:
    (tmp_path / "wide.py").write_text(PLUGIN)
    listed = cli("variants", "list", "--json", "--plugins", str(tmp_path))
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert BUILTINS | {"wide"} <= set(rows)
    assert rows["wide"]["params"] > rows["baseline"]["params"]
    assert rows["learned-pos"]["params"] == rows["baseline"]["params"] + 64 * 128
    shown = cli("variants", "show", "wide", "--plugins", str(tmp_path))
    assert "n_embd: 128 -> 256" in shown.stdout


@pytest.mark.slow
def test_scaffolded_variant_trains(tmp_path: Path) -> None:
    created = cli("variants", "new", "deep-narrow", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "variants" / "deep-narrow.py").is_file()
    again = cli("variants", "new", "deep-narrow", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = cli("variants", "new", "Deep Narrow!", cwd=tmp_path)
    assert bad.returncode == 2 and "slug" in bad.stderr
    data = Path(__file__).resolve().parent.parent / "data" / "input.txt"
    run = cli("run", "--variants", "deep-narrow", "--devices", "cpu", *ONE_SEED, "--max-steps", "10", "--data", str(data),
              "--out", "runs/x", "--quiet", "--no-report", *TINY_SET, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    trial = json.loads((tmp_path / "runs/x/trials/deep-narrow--cpu--s0/trial.json").read_text())
    assert trial["status"] == "completed"
    assert trial["changed"] == {"n_layer": 2}


def test_plugins_do_not_leak_between_discoveries(tmp_path: Path) -> None:
    (tmp_path / "wide.py").write_text(PLUGIN)
    discover([tmp_path])
    assert "wide" not in discover().names()


COMPONENT_PLUGIN = """
from torch import nn
from minigpt import variant
from minigpt.components import norm


@norm.register("identity-norm")
class IdentityNorm(nn.Module):
    def __init__(self, cfg):
        super().__init__()

    def forward(self, x):
        return x


@variant("no-norm", "no normalization at all")
def no_norm(cfg):
    return cfg.replace(norm="identity-norm")
"""


def test_a_plugin_registering_a_component_can_be_discovered_twice(tmp_path: Path) -> None:
    (tmp_path / "no_norm.py").write_text(COMPONENT_PLUGIN)
    discover([tmp_path])
    assert discover([tmp_path]).get("no-norm").configure(Config()).norm == "identity-norm"


def test_two_plugins_registering_one_component_name_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(COMPONENT_PLUGIN)
    (tmp_path / "b.py").write_text(COMPONENT_PLUGIN.replace('"no-norm"', '"no-norm-2"'))
    with pytest.raises(VariantError, match="identity-norm' is registered twice"):
        discover([tmp_path])


def test_a_checkout_variants_folder_beside_the_builtins_defines_nothing_twice(tmp_path: Path) -> None:
    """The package installed from a wheel, run inside a checkout of the same version: its
    variants/ folder holds the built-in files again, as local ones."""
    shutil.copytree(BUILTIN_DIR, tmp_path / "variants")
    registry = discover(cwd=tmp_path)
    assert registry.names() == discover().names()
    assert {v.source for v in registry} == {"built-in"}


def test_a_local_file_redefining_a_builtin_name_names_both_files(tmp_path: Path) -> None:
    (tmp_path / "variants").mkdir()
    (tmp_path / "variants" / "mine.py").write_text(PLUGIN.replace('"wide"', '"baseline"'))
    with pytest.raises(
        VariantError, match=r"'baseline' is defined twice: in .*baseline\.py and in .*variants/mine\.py"
    ):
        discover(cwd=tmp_path)


def test_scaffolding_a_registered_name_is_refused(tmp_path: Path) -> None:
    done = cli("variants", "new", "baseline", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: variant 'baseline' already exists (built-in, ")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "variants").exists()


RECORDED_PLUGIN = """
from minigpt import variant
from minigpt.components import position
from minigpt.components.positions import NoPosition


@position.register("recorded-pos")
class RecordedPosition(NoPosition):
    pass


@variant("recorded", "a position scheme only this plugin defines")
def recorded(cfg):
    return cfg.replace(position="recorded-pos")
"""


@pytest.mark.slow
def test_generate_from_a_run_loads_the_plugins_the_run_recorded(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "recorded.py").write_text(RECORDED_PLUGIN)
    run = cli("run", "--variants", "recorded", "--devices", "cpu", *ONE_SEED, "--max-steps", "5", "--plugins", "mine",
              "--out", "runs/r", "--quiet", "--no-report", *TINY_SET, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    sample = ["generate", "--run", "runs/r", "--max-new-tokens", "5"]

    done = cli(*sample, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "trial recorded--cpu--s0" in done.stderr

    (tmp_path / "mine").rename(tmp_path / "moved")
    missing = cli(*sample, cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: plugin mine, recorded in {Path('runs/r/sweep.json')}, does not exist here; "
        "pass --plugins PATH to say where it is"
    ]
    assert cli(*sample, "--plugins", "moved", cwd=tmp_path).returncode == 0
