"""The `minigpt-bench` command line: a thin typer layer over the library.

torch, pandas and seaborn are imported inside the commands, so `--help` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from minigpt.cli_data import data_app
from minigpt.cli_shared import PluginsOption, PresetOption, console, discover_variants
from minigpt.cli_variants import variants_app
from minigpt.errors import DiskFull, UserError
from minigpt.executors import executor_names
from minigpt.interrupts import exit_code, sigterm_as_interrupt
from minigpt.sizes import sizes_help

app = typer.Typer(
    name="minigpt-bench",
    help="Does this transformer change help, and what does it cost? Train variants of a small "
    "character-level GPT on every device and seed, measure speed and loss honestly, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(variants_app, name="variants")
app.add_typer(data_app, name="data")


def print_version(asked: bool) -> None:
    if asked:
        from minigpt import __version__

        print(f"minigpt-bench {__version__}")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Does this transformer change help, and what does it cost?"""


@app.command()
def run(
    ctx: typer.Context,
    spec_file: Annotated[
        Path | None,
        typer.Option("--spec", help="Read every option from this TOML file; options given here override it."),
    ] = None,
    variants: Annotated[
        str | None, typer.Option(help="Comma-separated variant names, or 'all'. \\[default: a contrast set]")
    ] = None,
    devices: Annotated[str, typer.Option(help="auto (every device here), or e.g. cpu,cuda,mps.")] = "auto",
    seeds: Annotated[
        str,
        typer.Option(
            help="auto: rounds of seeds until each variant is decided (3 first, then more only for the "
            "undecided, up to --max-seeds); or comma-separated seeds, at least three (the verdicts pair them)."
        ),
    ] = "auto",
    max_seeds: Annotated[
        int | None, typer.Option(help="Most seeds per variant with --seeds auto. \\[default: 10]")
    ] = None,
    margin: Annotated[
        float,
        typer.Option(help="Loss margin in nats: a difference whose interval lies within ±M reads equivalent."),
    ] = 0.01,
    speed_margin: Annotated[
        float,
        typer.Option(help="Speed margin as a fraction: a speed ratio whose interval lies within 1±M reads equivalent."),
    ] = 0.02,
    data: Annotated[
        str,
        typer.Option(
            help="Corpus: tiny-shakespeare (installed with the package), a UTF-8 text file, "
            "or american-stories:YEARS (e.g. 1801-1810)."
        ),
    ] = "tiny-shakespeare",
    max_steps: Annotated[int | None, typer.Option(help="Stop each trial after N optimizer steps.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="Stop each trial after N training tokens. \\[default: the preset's]")
    ] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Stop each trial after S seconds of training.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key for every variant: key=value.")
    ] = None,
    preset: PresetOption = "auto",
    target_loss: Annotated[
        float, typer.Option(help="Validation loss whose first crossing gives time_to_target_s.")
    ] = 2.0,
    stop_at_target: Annotated[
        bool, typer.Option("--stop-at-target", help="End each trial when it first reaches --target-loss.")
    ] = False,
    max_vocab: Annotated[
        int | None, typer.Option(help="Keep the N-1 most frequent characters, map the rest to one unknown.")
    ] = None,
    tune: Annotated[
        list[str] | None,
        typer.Option(
            help="Tune KEY per variant: lr (its own lr x 1/2..2, stepping x2 while the best is at an edge; "
            "min_lr following) or KEY=V1,V2,...; repeat for a product grid. Chosen on --tune-seeds at the full budget."
        ),
    ] = None,
    tune_seeds: Annotated[
        str | None, typer.Option(help="Seeds that choose tuned values, never --seeds. \\[default: 1000]")
    ] = None,
    sizes: Annotated[str | None, typer.Option(help=f"Size ladder: names ({sizes_help()}) or KEY=V1,V2,... .")] = None,
    max_flops: Annotated[
        float | None, typer.Option(help="Budget each trial in model FLOPs (FLOPs/token x tokens): equal compute.")
    ] = None,
    eval_lengths: Annotated[
        str | None,
        typer.Option(
            help="After training, score each trial's best checkpoint at these multiples of block_size, "
            "e.g. 1,2,4 (non-overlapping and sliding windows): length generalization."
        ),
    ] = None,
    plugins: PluginsOption = None,
    executor: Annotated[str, typer.Option(help=f"Where trials run: {' or '.join(executor_names())}.")] = "local",
    # An executor's options are named after it and a field of its options (--ray-address: RayOptions.address).
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster for --executor ray: auto, HOST:PORT or ray://HOST:10001; left out: a local Ray instance."
        ),
    ] = None,
    ray_cpus_per_trial: Annotated[
        int | None, typer.Option(help="CPUs per cpu trial on Ray; left out: all of the smallest node's.")
    ] = None,
    track: Annotated[
        list[str] | None,
        typer.Option(
            help="Also log every trial to tensorboard, wandb or mlflow (repeatable; each an extra to install)."
        ),
    ] = None,
    tensorboard_dir: Annotated[
        Path | None, typer.Option(help="TensorBoard's log folder for --track tensorboard. \\[default: OUT/tensorboard]")
    ] = None,
    out: Annotated[Path, typer.Option(help="Run directory; re-running the same one resumes.")] = Path("runs/default"),
    fresh: Annotated[bool, typer.Option("--fresh", help="Delete what --out holds and start over.")] = False,
    no_retry: Annotated[
        bool, typer.Option("--no-retry", help="Keep the trials that failed in --out as they are; do not retry them.")
    ] = False,
    no_speed: Annotated[
        bool, typer.Option("--no-speed", help="Skip the interleaved speed comparison after training.")
    ] = False,
    speed_rounds: Annotated[
        int, typer.Option(help="Rounds of the interleaved speed comparison (more: narrower intervals).")
    ] = 10,
    no_report: Annotated[bool, typer.Option("--no-report", help="Do not write the report at the end.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Plain log lines instead of progress bars.")] = False,
) -> None:
    """Sweep variants x devices x seeds under one budget, then summarize (and report).

    Re-running the same command resumes: trials that completed, diverged or were
    skipped are kept; failed ones are retried (earlier errors kept as attempts).

    Exit codes: 0 every trial completed or diverged (or skipped: absent device);
    1 a trial failed (the last line says how many, and where their errors are);
    2 a mistake in the command; 130 Ctrl-C; 143 SIGTERM (run again to resume)."""
    from minigpt.cli_run import run_spec
    from minigpt.spec import build_spec

    # typer's own copy of click names the source; an option left at its default leaves the file's value
    given = {name.rstrip("_"): value for name, value in ctx.params.items()
             if name != "spec_file" and ctx.get_parameter_source(name).name == "COMMANDLINE"}  # fmt: skip
    run_spec(build_spec(spec_file, given))


@app.command("spec")
def spec_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `run`.")],
) -> None:
    """Print the TOML spec that reproduces a run: `run --spec` of it into the same --out resumes
    the run as the same plan; into a new --out it runs the sweep again."""
    from minigpt.spec import spec_of_run, to_toml

    comment = f"The sweep in {run_dir}: minigpt-bench run --spec THIS_FILE (options given there override it)."
    sys.stdout.write(to_toml(spec_of_run(run_dir), comment))


@app.command()
def speed(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `run`.")] = Path("runs/default"),
    rounds: Annotated[int, typer.Option(help="Counted rounds; each times every variant's steps once.")] = 10,
) -> None:
    """Interleaved speed of a run's variants: their training steps alternate in rounds in one
    process, each variant's tokens/s paired with the baseline's in the same round (> 1 is faster),
    with a 95% interval and a verdict. Writes RUN_DIR/speed.json, which `report` shows.
    Exits 1 when a measurement failed (its error is in the table and speed.json)."""
    from minigpt.cli_run import measure_speed
    from minigpt.speed import failed_measurements

    failed = failed_measurements(measure_speed(run_dir, rounds))
    console.print(f"speed: {run_dir / 'speed.json'}", soft_wrap=True)
    if failed:
        sys.stdout.flush()
        print(f"error: the speed of {', '.join(failed)} could not be measured", file=sys.stderr)
        raise typer.Exit(1)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `run`.")] = Path("runs/default"),
    out: Annotated[Path | None, typer.Option(help="Report directory. \\[default: reports/RUN_NAME]")] = None,
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
        Path | None,
        typer.Option(
            "--run", help="Start from this run's base configuration; store the JSON as RUN_DIR/bench.json for `report`."
        ),
    ] = None,
    preset: PresetOption = "auto",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key of the preset for every variant, as in run: key=value."),
    ] = None,
    plugins: PluginsOption = None,
    rounds: Annotated[
        int, typer.Option(help="Interleaved rounds: every variant timed once per round, the order alternating.")
    ] = 5,
) -> None:
    """Micro-benchmarks (pytest-benchmark) of every variant's forward pass, training step and
    decoding step with and without the KV cache, timed in interleaved rounds, then a table of
    medians and speeds relative to the baseline (> 1 is faster), paired within rounds.

    Each variant is configured as `run` configures it: the preset, then --set, then the variant.
    With --run: the run's recorded base configuration and plugins; a contradicting --preset or --set is refused.

    Arguments after `--` go to pytest and pytest-benchmark, e.g.
    `minigpt-bench bench -- --benchmark-autosave --benchmark-compare --benchmark-histogram`.
    Exits 1 when a measurement failed (or none was taken), 2 for a mistake in those arguments.
    """
    from minigpt.bench import command_exit_code, run_bench, summarize

    result = run_bench(variants, devices, plugins or [], set_ or [], json_path, run_dir, ctx.args, rounds, preset)
    if result.report is not None:
        console.print()
        console.print(summarize(result.report), markup=False, highlight=False, soft_wrap=True)
        for path in result.saved:
            console.print(f"benchmark JSON: {path}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(command_exit_code(result.exit_code))


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
    context: Annotated[
        int | None,
        typer.Option(help="Tokens each prediction sees; past block_size where the variant's positions extend."),
    ] = None,
    plugins: PluginsOption = None,
) -> None:
    """Sample text from the best variant of a sweep, or from a checkpoint.

    The text (prompt included) streams to stdout; which checkpoint was used goes to stderr.
    With --run, the plugins the sweep ran with are loaded; --plugins replaces them."""
    from minigpt.checkpoint import load_checkpoint
    from minigpt.config import ConfigError
    from minigpt.generate import (
        check_sampling,
        choose_checkpoint,
        context_length,
        describe_checkpoint,
        encode_prompt,
        write_samples,
    )  # fmt: skip
    from minigpt.variants import recorded_plugins

    check_sampling(max_new_tokens, temperature, top_k, top_p, num_samples)
    path, picked = choose_checkpoint(run_dir, checkpoint, variant)
    # a plugin's components must be registered before the model is built
    discover_variants(plugins or (recorded_plugins(run_dir) if run_dir is not None else []))
    try:
        model, tokenizer, meta = load_checkpoint(path)
    except ConfigError as error:
        raise ConfigError(f"{error} (if a plugin defines it, add --plugins PATH)") from None
    length = context_length(model, context)
    ids = encode_prompt(tokenizer, prompt, length)
    print(f"sampling from {picked or describe_checkpoint(path, meta)}", file=sys.stderr)
    write_samples(
        model, tokenizer, ids, sys.stdout, max_new_tokens, temperature, top_k, top_p, num_samples, seed, length
    )  # fmt: skip


def main() -> None:
    """Console entry point: user mistakes end in one line on stderr and exit code 2; Ctrl-C
    in 130, SIGTERM in 143, a full disk in one line and 1."""
    try:
        with sigterm_as_interrupt():
            code = app(standalone_mode=False)
    except typer.Exit as exit_:
        code = exit_.exit_code
    except (KeyboardInterrupt, typer.Abort) as interrupt:
        print("interrupted", file=sys.stderr)
        code = exit_code(interrupt)
    except DiskFull as error:
        print(f"error: {error}", file=sys.stderr)
        code = 1
    except (UserError, typer.TyperException) as error:
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        print(f"error: {message}", file=sys.stderr)
        code = 2
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
