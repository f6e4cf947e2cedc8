"""The `minigpt-bench` command line: a thin typer layer over the library.

torch, pandas and seaborn are imported inside the commands, so `--help` stays instant.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from minigpt.errors import UserError

app = typer.Typer(
    name="minigpt-bench",
    help="Does this transformer change help, and what does it cost? Train variants of a small "
    "character-level GPT on every device and seed, measure speed and loss honestly, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
variants_app = typer.Typer(help="List, inspect and scaffold variant plugins.", no_args_is_help=True)
app.add_typer(variants_app, name="variants")
data_app = typer.Typer(help="Inspect corpora: text files and American Stories subsets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
PresetOption = Annotated[str, typer.Option(help="Starting recipe: cpu-fast (tuned default) or reference.")]
PluginsOption = Annotated[
    list[Path] | None,
    typer.Option("--plugins", help="Extra plugin file or folder of variants (repeatable)."),
]


def discover_variants(plugins: list[Path] | None):  # noqa: ANN201
    from minigpt.variants import discover

    return discover(plugins or [])


def preset_config(name: str):  # noqa: ANN201
    """The base configuration of a preset, which every variant then changes."""
    from minigpt.config import PRESETS

    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


@app.command()
def run(
    variants: Annotated[
        str | None, typer.Option(help="Comma-separated variant names, or 'all'. [default: a contrast set]")
    ] = None,
    devices: Annotated[str, typer.Option(help="auto (every device here), or e.g. cpu,cuda,mps.")] = "auto",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0",
    data: Annotated[
        str | None,
        typer.Option(
            help="Corpus: a UTF-8 text file, or american-stories:YEARS (e.g. 1801-1810). "
            r"\[default: tiny Shakespeare, installed with the package]"  # \[: not rich markup
        ),
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop each trial after N optimizer steps.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="Stop each trial after N training tokens. [default: the preset's]")
    ] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Stop each trial after S seconds of training.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key for every variant: key=value.")
    ] = None,
    preset: PresetOption = "cpu-fast",
    target_loss: Annotated[
        float, typer.Option(help="Validation loss whose first crossing gives time_to_target_s.")
    ] = 2.0,
    stop_at_target: Annotated[
        bool, typer.Option("--stop-at-target", help="End each trial when it first reaches --target-loss.")
    ] = False,
    max_vocab: Annotated[
        int | None, typer.Option(help="Keep the N-1 most frequent characters, map the rest to one unknown.")
    ] = None,
    plugins: PluginsOption = None,
    executor: Annotated[str, typer.Option(help="Where trials run: local or ray.")] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster for --executor ray: auto, HOST:PORT or ray://HOST:10001; left out: a local Ray instance."
        ),
    ] = None,
    ray_cpus_per_trial: Annotated[
        int | None, typer.Option(help="CPUs per cpu trial on Ray; left out: all of the smallest node's.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Run directory; re-running the same one resumes.")] = Path("runs/default"),
    fresh: Annotated[bool, typer.Option("--fresh", help="Delete what --out holds and start over.")] = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="Do not write the report at the end.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Plain log lines instead of progress bars.")] = False,
) -> None:
    """Sweep variants x devices x seeds under one budget, then summarize (and report)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a run directory; choose another path")
    from minigpt.bundled import TINY_SHAKESPEARE
    from minigpt.progress import LogObserver, RichObserver, concurrency_warning, summary_table
    from minigpt.store import RunStore
    from minigpt.sweep import DEFAULT_VARIANTS, parse_devices, parse_seeds, plan_sweep, run_sweep
    from minigpt.train import Budget

    chosen = preset_config(preset)
    base = chosen.config().with_overrides(set_ or [])
    if max_steps is None and max_tokens is None and max_seconds is None:
        max_tokens = chosen.max_tokens
    budget = Budget(max_steps, max_tokens, max_seconds, stop_at_target)
    registry = discover_variants(plugins)
    plan = plan_sweep(
        registry,
        variants or DEFAULT_VARIANTS,
        parse_devices(devices),
        parse_seeds(seeds),
        base,
        str(TINY_SHAKESPEARE) if data is None else data,
        budget,
        target_loss,
        max_vocab,
        options={"preset": preset, "overrides": set_ or [], "plugins": [str(p) for p in plugins or []]},
    )
    store = RunStore(out)
    observer = LogObserver(console) if quiet else RichObserver(console)
    try:
        records = run_sweep(
            plan,
            store,
            observer,
            fresh,
            executor=executor,
            ray_address=ray_address,
            ray_cpus_per_trial=ray_cpus_per_trial,
        )
    except KeyboardInterrupt:
        observer.close()
        console.print(summary_table(store.trials()))
        console.print(f"interrupted: finished trials are kept in {out}; run the same command again to resume")
        raise typer.Exit(130) from None
    observer.close()
    console.print(summary_table(records))
    warning = concurrency_warning(records)
    if warning:
        console.print(warning, style="yellow", markup=False)
    console.print(f"results: {out}")
    if not no_report:
        from minigpt.report import default_report_dir, write_report

        console.print(f"report: {write_report(out, default_report_dir(out))}", soft_wrap=True)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `run`.")] = Path("runs/default"),
    out: Annotated[Path | None, typer.Option(help="Report directory. [default: reports/RUN_NAME]")] = None,
) -> None:
    """Tables and seaborn figures comparing the variants of a run, as HTML and Markdown."""
    from minigpt.report import default_report_dir, write_report

    page = write_report(run_dir, out or default_report_dir(run_dir))
    console.print(f"report: {page} (report.md, results.csv and the figures beside it)", soft_wrap=True)


@app.command(context_settings={"allow_extra_args": True})
def bench(
    ctx: typer.Context,
    variants: Annotated[str, typer.Option(help="Comma-separated variant names, or 'all'.")] = "all",
    devices: Annotated[str, typer.Option(help="auto, or e.g. cpu,cuda.")] = "auto",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write pytest-benchmark's JSON here.")] = None,
    run_dir: Annotated[
        Path | None, typer.Option("--run", help="Store the JSON as RUN_DIR/bench.json, where `report` shows it.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Change the benchmarked size (default: the default config): key=value."),
    ] = None,
    plugins: PluginsOption = None,
) -> None:
    """Micro-benchmarks (pytest-benchmark) of every variant's forward pass, training step and
    decoding step with and without the KV cache, then a table of medians relative to the baseline.

    Arguments after `--` go to pytest and pytest-benchmark, e.g.
    `minigpt-bench bench -- --benchmark-autosave --benchmark-compare --benchmark-histogram`.
    """
    from minigpt.bench import run_bench, summarize

    result = run_bench(variants, devices, plugins or [], set_ or [], json_path, run_dir, ctx.args)
    if result.report is not None:
        console.print()
        console.print(summarize(result.report), markup=False, highlight=False, soft_wrap=True)
        for path in result.saved:
            console.print(f"benchmark JSON: {path}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(result.exit_code)


@app.command()
def generate(
    run_dir: Annotated[Path | None, typer.Option("--run", help="Pick the best completed trial of this run.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="A checkpoint directory or model.safetensors.")] = None,
    variant: Annotated[str | None, typer.Option(help="With --run: the best completed trial of this variant.")] = None,
    prompt: Annotated[
        str, typer.Option(help="Text to continue: 1 to block_size characters from the model's vocabulary.")
    ] = "\n",
    max_new_tokens: Annotated[int, typer.Option(help="Characters to generate.")] = 500,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 is greedy.")] = 0.8,
    top_k: Annotated[int | None, typer.Option(help="Sample among the k most likely characters.")] = None,
    top_p: Annotated[
        float | None, typer.Option(help="Sample among the smallest set of characters whose probability reaches p.")
    ] = None,
    num_samples: Annotated[int, typer.Option(help="How many samples, drawn together in one batch.")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same samples.")] = 0,
    plugins: PluginsOption = None,
) -> None:
    """Sample text from the best variant of a sweep, or from a checkpoint.

    The text (prompt included) streams to stdout; which checkpoint was used goes to stderr.
    With --run, the plugins the sweep ran with are loaded; --plugins replaces them."""
    from minigpt.checkpoint import load_checkpoint
    from minigpt.config import ConfigError
    from minigpt.generate import check_sampling, choose_checkpoint, describe_checkpoint, encode_prompt, write_samples
    from minigpt.variants import recorded_plugins

    check_sampling(max_new_tokens, temperature, top_k, top_p, num_samples)
    path, picked = choose_checkpoint(run_dir, checkpoint, variant)
    # a plugin's components must be registered before the model is built
    discover_variants(plugins or (recorded_plugins(run_dir) if run_dir is not None else []))
    try:
        model, tokenizer, meta = load_checkpoint(path)
    except ConfigError as error:
        raise ConfigError(f"{error} (if a plugin defines it, add --plugins PATH)") from None
    ids = encode_prompt(tokenizer, prompt, model.cfg.block_size)
    print(f"sampling from {picked or describe_checkpoint(path, meta)}", file=sys.stderr)
    write_samples(model, tokenizer, ids, sys.stdout, max_new_tokens, temperature, top_k, top_p, num_samples, seed)


@variants_app.command("list")
def variants_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    preset: PresetOption = "cpu-fast",
    plugins: PluginsOption = None,
) -> None:
    """Every variant found: name, family, description, source, parameters at the default size."""
    from minigpt.model import GPT

    base = preset_config(preset).config()

    rows = [
        {
            "name": v.name,
            "family": v.family,
            "description": v.description,
            "source": v.source,
            "origin": v.origin,
            "params": GPT(v.configure(base)).num_params(),
        }
        for v in discover_variants(plugins)
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} variants")
    for column in ("name", "family", "description", "source", "params"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for row in rows:
        table.add_row(row["name"], row["family"], row["description"], row["source"], f"{row['params']:,}")
    console.print(table)


@variants_app.command("show")
def variants_show(
    name: Annotated[str, typer.Argument(help="Variant name.")],
    preset: PresetOption = "cpu-fast",
    plugins: PluginsOption = None,
) -> None:
    """What a variant changes relative to the baseline, and its parameter count."""
    from minigpt.model import GPT
    from minigpt.variants import BASELINE

    preset_base = preset_config(preset).config()
    registry = discover_variants(plugins)
    chosen = registry.get(name)
    base = registry.get(BASELINE).configure(preset_base) if BASELINE in registry.names() else preset_base
    cfg = chosen.configure(preset_base)
    console.print(f"[bold]{chosen.name}[/] ({chosen.family}, {chosen.source}: {chosen.origin})")
    console.print(chosen.description, markup=False)
    changes = cfg.diff(base)
    for key, (new, old) in changes.items():
        console.print(f"  {key}: {old!r} -> {new!r}", markup=False)
    if not changes:
        console.print("  no configuration change from the baseline")
    params, base_params = GPT(cfg).num_params(), GPT(base).num_params()
    console.print(f"parameters: {params:,} (baseline {base_params:,}, {params / base_params - 1:+.1%})")


VARIANT_TEMPLATE = '''"""{name}: say here what this variant changes and why it might help."""

from minigpt import variant


@variant("{name}", "one more transformer block than the baseline (edit me)")
def {function}(cfg):
    # cfg is the baseline configuration (model and training keys, as `--set` takes them);
    # return a changed copy. `minigpt-bench variants show {name}` prints the difference.
    return cfg.replace(n_layer=cfg.n_layer + 1)
'''


@variants_app.command("new")
def variants_new(name: Annotated[str, typer.Argument(help="Slug for the new variant, e.g. deep-narrow.")]) -> None:
    """Scaffold variants/NAME.py from a template that runs as written."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise UserError(
            f"variant name {name!r} must be a slug: a lowercase letter, then lowercase letters, digits, - or _"
        )
    taken = {v.name: v for v in discover_variants(None)}.get(name)
    if taken is not None:
        raise UserError(f"variant {name!r} already exists ({taken.source}, {taken.origin}); choose another name")
    path = Path("variants") / f"{name}.py"
    if path.exists():
        raise UserError(f"{path} already exists; choose another name or edit that file")
    from minigpt import atomic

    atomic.write_text(path, VARIANT_TEMPLATE.format(name=name, function=name.replace("-", "_")))
    console.print(f"wrote {path}; `minigpt-bench run --variants baseline,{name}` will train it")


@data_app.command("info")
def data_info(
    spec: Annotated[
        str, typer.Argument(help="A UTF-8 text file, or american-stories:YEARS (e.g. 1801-1810 or 1801,1805-1807).")
    ],
    max_vocab: Annotated[
        int | None,
        typer.Option(help="Keep the N-1 most frequent characters; map the others to one unknown character."),
    ] = None,
    block_size: Annotated[
        int | None, typer.Option(min=1, help="Check both splits are longer than this. [default: the model's]")
    ] = None,
) -> None:
    """Characters, vocabulary, split sizes and cache file of a corpus (encoding and caching it)."""
    from rich.table import Table

    from minigpt.config import Config
    from minigpt.data import load_corpus

    corpus = load_corpus(spec, max_vocab)
    block_size = Config().block_size if block_size is None else block_size
    corpus.check_block_size(block_size)
    tokenizer = corpus.tokenizer
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("characters", f"{corpus.n_chars:,}")
    table.add_row("vocabulary", f"{tokenizer.vocab_size:,}")
    if tokenizer.unknown is not None:
        table.add_row(f"mapped to unknown {tokenizer.unknown!r}", f"{corpus.replaced:,}")
    table.add_row("train split", f"{len(corpus.train):,}")
    table.add_row("validation split", f"{len(corpus.val):,}")
    table.add_row("fits block_size", str(block_size))
    console.print(f"corpus: {corpus.name}", markup=False, soft_wrap=True)
    console.print(table)
    console.print(f"cache: {corpus.cache_path}", markup=False, soft_wrap=True)


def main() -> None:
    """Console entry point: user mistakes end in one line on stderr and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except typer.Exit as exit_:
        code = exit_.exit_code
    except (KeyboardInterrupt, typer.Abort):
        print("interrupted", file=sys.stderr)
        code = 130
    except (UserError, typer.TyperException) as error:
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        print(f"error: {message}", file=sys.stderr)
        code = 2
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
