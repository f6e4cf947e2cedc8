"""`minigpt-bench data`: inspect a corpus before sweeping on it."""

from __future__ import annotations

from typing import Annotated

import typer

from minigpt.cli_shared import console

data_app = typer.Typer(help="Inspect corpora: text files and American Stories subsets.", no_args_is_help=True)


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
        int | None, typer.Option(min=1, help="Check both splits are longer than this. \\[default: the model's]")
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
