"""The `minigpt-bench` command line: a thin typer layer over the library.

torch, pandas and seaborn are imported inside the commands, so `--help` stays instant.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from minigpt.cli_data import data_app
from minigpt.cli_shared import PluginsOption, PresetOption, console, discover_variants
from minigpt.cli_variants import variants_app
from minigpt.errors import DiskFull, UserError
from minigpt.interrupts import exit_code, sigterm_as_interrupt
from minigpt.spec import spec_options

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


def run(ctx: typer.Context, spec_file: Path | None, **options: Any) -> None:
    """Sweep variants x devices x seeds under one budget, then summarize (and report).

    Re-running the same command resumes: trials that completed, diverged or were
    skipped are kept; failed ones are retried (earlier errors kept as attempts).

    Exit codes: 0 every trial completed or diverged (or skipped: absent device);
    1 a trial failed (the last line says how many, and where their errors are);
    2 a mistake in the command; 130 Ctrl-C; 143 SIGTERM (run again to resume)."""
    from minigpt.cli_run import run_spec
    from minigpt.spec import build_spec

    # typer's own copy of click names the source; an option left at its default leaves the file's value
    given = {name: value for name, value in options.items() if ctx.get_parameter_source(name).name == "COMMANDLINE"}
    run_spec(build_spec(spec_file, given))


def run_parameters() -> list[inspect.Parameter]:
    """`run`'s typer parameters, each from its one declaration (minigpt.spec.RunSpec, or an
    executor's options): the name, the type, the default and the help."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        inspect.Parameter("spec_file", keyword, default=None, annotation=Annotated[Path | None, typer.Option(
            "--spec", help="Read every option from this TOML file; options given here override it.")]),
    ]  # fmt: skip
    for name, declared in spec_options().items():
        kind = declared["cli"] or COMMAND_LINE_TYPES[declared["type"]]
        help_text = declared["help"]() if callable(declared["help"]) else declared["help"]
        if declared["shown"]:
            help_text += f" \\[default: {declared['shown']}]"
        default = None if isinstance(declared["default"], tuple) else declared["default"]
        if kind is Path and default is not None:
            default = Path(default)
        option = typer.Option(*declared["flags"], help=help_text)
        parameters.append(inspect.Parameter(name, keyword, default=default, annotation=Annotated[kind, option]))
    return parameters


COMMAND_LINE_TYPES: dict[str, Any] = {
    "str": str,
    "str | None": str | None,
    "int": int,
    "int | None": int | None,
    "float": float,
    "float | None": float | None,
    "bool": bool,
    "tuple[str, ...]": list[str] | None,  # repeatable
}


run.__signature__ = inspect.Signature(run_parameters())  # type: ignore[attr-defined]
run.__annotations__ = {p.name: p.annotation for p in run.__signature__.parameters.values()} | {"return": None}
app.command()(run)


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
    from minigpt.progress import measure_speed
    from minigpt.speed import failed_measurements

    failed = failed_measurements(measure_speed(console, run_dir, rounds))
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
    from minigpt.bench import command_exit_code, run_bench, summarize_bench

    result = run_bench(variants, devices, plugins or [], set_ or [], json_path, run_dir, ctx.args, rounds, preset)
    if result.report is not None:
        console.print()
        console.print(summarize_bench(result.report), markup=False, highlight=False, soft_wrap=True)
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
