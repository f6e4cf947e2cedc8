"""Sampling text from a trained model, with a KV cache.

    from minigpt.generate import sample_text
    print(sample_text("runs/default/trials/baseline--cpu--s0", prompt="ROMEO:", max_new_tokens=200))

or, with the model in hand:

    from minigpt.checkpoint import load_checkpoint
    from minigpt.generate import generate
    model, tokenizer, meta = load_checkpoint("runs/default/trials/baseline--cpu--s0")
    print(tokenizer.decode(generate(model, tokenizer.encode("ROMEO:"), max_new_tokens=200)[0]))

What the cache must reproduce is the plain loop "predict from the last block_size tokens, placed
at positions 0..block_size-1". While the text fits in one block, feeding each new token after the
cached keys and values computes exactly that. Once it is longer, the window slides: its first
token changes, and with it every hidden state after the first layer, so no cached key or value
is valid any more (for any position scheme). Each later token is therefore predicted by a full
forward pass over the cropped window, which is the plain loop's own computation.

The context is block_size tokens unless asked otherwise (`context`, `generate --context N`): a
model whose positions extend past its training length (RoPE, ALiBi, sinusoidal, none) may see
more, and one that cannot (a learned position table) refuses, saying why.

The prompt rule: at least 1 character and at most the context. A longer prompt would be cut to
its last characters before the model saw it, so it is refused rather than silently shortened.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn
from torch.nn import functional as F

from minigpt.data import CharTokenizer
from minigpt.errors import UserError
from minigpt.model import GPT, KVCache
from minigpt.store import RunStore, is_evaluation

DEFAULT_PROMPT = "\n"
DEFAULT_TEMPERATURE = 0.8  # for text meant to be read; generate() defaults to the model's own distribution


class GenerationError(UserError):
    """A prompt or a sampling setting that cannot be used; the message says which and why."""


class RunSelectionError(UserError):
    """A run directory that has no trial to sample from."""


def check_sampling(
    max_new_tokens: int,
    temperature: float,
    top_k: int | None = None,
    top_p: float | None = None,
    num_samples: int = 1,
) -> None:
    """Refuse settings that have no meaning, before any model is loaded."""
    if max_new_tokens < 0:
        raise GenerationError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise GenerationError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise GenerationError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise GenerationError(f"top_p must be in (0, 1], got {top_p}")
    if num_samples < 1:
        raise GenerationError(f"num_samples must be >= 1, got {num_samples}")


def context_length(model: GPT, context: int | None) -> int:
    """The tokens the model conditions on: block_size, or `context` where its positions reach that far."""
    if context is None:
        return model.cfg.block_size
    if context < 1:
        raise GenerationError(f"the context must be at least 1 token, got {context}")
    if model.max_length is not None and context > model.max_length:
        raise GenerationError(
            f"this model cannot see {context} tokens: {model.position.limit_reason}; "
            f"use a context of at most {model.max_length}"
        )
    return context


def check_prompt_length(length: int, context: int) -> None:
    if length == 0:
        raise GenerationError("the prompt is empty; give at least one character")
    if length > context:
        raise GenerationError(
            f"the prompt has {length} characters but this model sees at most {context} (its context); "
            f"shorten it to its last {context} characters"
        )


def encode_prompt(tokenizer: CharTokenizer, prompt: str, context: int) -> list[int]:
    """The prompt's token ids; characters outside the vocabulary and over-long prompts are refused."""
    unknown = sorted({ch for ch in prompt if ch not in tokenizer.index})
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise GenerationError(
            f"prompt character{plural} {', '.join(map(repr, unknown))} not in this model's vocabulary "
            f"({tokenizer.vocab_size} characters: {tokenizer.chars!r})"
        )
    check_prompt_length(len(prompt), context)
    return tokenizer.encode(prompt)


def top_k_mask(logits: torch.Tensor, k: int) -> torch.Tensor:
    """True for exactly the k highest logits of each row (ties broken by torch.topk)."""
    return torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, logits.topk(k, dim=-1).indices, True)


def top_p_mask(probs: torch.Tensor, p: float) -> torch.Tensor:
    """True for the smallest set of tokens whose total probability reaches p: taking the most
    likely first, a token is kept while the probability before it is still below p."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    cumulative = sorted_probs.cumsum(dim=-1)
    before = torch.cat((torch.zeros_like(cumulative[..., :1]), cumulative[..., :-1]), dim=-1)
    return torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, order, before < p)


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Top-k, then top-p on what top-k left: every other token gets -inf."""
    if top_k is not None and top_k < logits.size(-1):
        logits = logits.masked_fill(~top_k_mask(logits, top_k), float("-inf"))
    if top_p is not None:
        logits = logits.masked_fill(~top_p_mask(F.softmax(logits, dim=-1), top_p), float("-inf"))
    return logits


def sample_next(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator,
) -> torch.Tensor:
    """logits (B, vocab) -> next token ids (B, 1); temperature 0 is greedy."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    probs = F.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


MATVEC_ROWS = 16  # inputs of at most this many rows read each weight more than they compute with it


class MatvecLinear:
    """An nn.Linear's forward for inputs of a few rows (a cached decoding step's one token per
    sample): the weight transposed and cut into one slice of output columns per thread, applied
    in one batched matmul. F.linear hands a single row to a matrix-vector kernel that runs on one
    core; the (in, out) slices are read in order, one per core, so every core works on the step
    (about 2x faster for a 6 x 384 model on two cores). Every output is the same full dot product
    over the input row. Larger inputs take the usual path."""

    def __init__(self, linear: nn.Linear, slices: int) -> None:
        self.plain = linear.forward
        self.out_features = linear.out_features
        slices = slices if linear.out_features % slices == 0 else 1
        weight = linear.weight.detach()
        self.weight = torch.stack(weight.t().chunk(slices, dim=1)).contiguous()  # (slices, in, out / slices)
        bias = linear.bias
        self.bias = None if bias is None else bias.detach().view(slices, 1, -1).clone()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.size(-1)
        if rows > MATVEC_ROWS:
            return self.plain(x)
        flat = x.reshape(1, rows, x.size(-1)).expand(self.weight.size(0), -1, -1)  # (slices, rows, in)
        out = torch.bmm(flat, self.weight) if self.bias is None else torch.baddbmm(self.bias, flat, self.weight)
        return out.transpose(0, 1).reshape(*x.shape[:-1], self.out_features)


@contextlib.contextmanager
def matvec_linears(model: nn.Module) -> Iterator[None]:
    """On a CPU, every nn.Linear of `model` takes the MatvecLinear path for as long as the block
    runs (a GPU already spreads one row's product over all its cores)."""
    on_cpu = next(model.parameters()).device.type == "cpu"
    slices = torch.get_num_threads()
    linears = [m for m in model.modules() if type(m) is nn.Linear] if on_cpu else []
    for linear in linears:
        linear.forward = MatvecLinear(linear, slices)  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        for linear in linears:
            del linear.forward


class Context:
    """The tokens the model conditions on (at most `length` of them) and, while they fit, the KV
    cache that lets each new token cost one position instead of all of them."""

    def __init__(self, model: GPT, prompt: torch.Tensor, use_cache: bool, length: int | None = None) -> None:
        self.model = model
        self.length = length or model.cfg.block_size
        self.window = prompt  # (B, T), T <= length
        self.cache = KVCache(model.cfg, length) if use_cache else None

    def first_logits(self) -> torch.Tensor:
        return self.model(self.window, cache=self.cache)[0][:, -1]

    def append(self, token: torch.Tensor) -> torch.Tensor:
        """Add token (B, 1) and return the logits (B, vocab) for the one after it."""
        self.window = torch.cat((self.window, token), dim=1)[:, -self.length :]
        if self.cache is not None and self.cache.length < self.length:
            return self.model(token, cache=self.cache)[0][:, -1]
        self.cache = None  # the window now slides: every step re-reads it from position 0
        return self.model(self.window)[0][:, -1]


# inference_mode rather than no_grad: no view or version tracking, which is a sizeable share of
# a one-token step's cost, made of dozens of tiny ops. What it yields are inference tensors,
# which any out-of-place op outside accepts.
@torch.inference_mode()
def stream(
    model: GPT,
    prompt_ids: Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    num_samples: int = 1,
    seed: int = 0,
    use_cache: bool = True,
    context: int | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the new token of every sample, shape (num_samples,), as soon as it is drawn.
    prompt_ids is one sequence; the samples all continue it, decoded together in one batch."""
    check_sampling(max_new_tokens, temperature, top_k, top_p, num_samples)
    device = next(model.parameters()).device
    prompt = torch.as_tensor(prompt_ids, dtype=torch.long, device=device)
    if prompt.dim() != 1:
        raise GenerationError(f"prompt_ids must be one sequence of token ids, got shape {tuple(prompt.shape)}")
    length = context_length(model, context)
    check_prompt_length(prompt.numel(), length)
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()  # dropout off
    try:
        with matvec_linears(model):
            window = Context(model, prompt.expand(num_samples, -1), use_cache, length)
            token = None
            for _ in range(max_new_tokens):
                logits = window.first_logits() if token is None else window.append(token)
                token = sample_next(logits, temperature, top_k, top_p, generator)
                yield token[:, 0]
    finally:
        model.train(was_training)


def generate(
    model: GPT,
    prompt_ids: Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    num_samples: int = 1,
    seed: int = 0,
    use_cache: bool = True,
    context: int | None = None,
) -> torch.Tensor:
    """The prompt followed by max_new_tokens sampled tokens: (num_samples, len(prompt) + max_new_tokens).
    use_cache=False gives the same tokens, computed by the plain loop (for checks and benchmarks);
    `context` is how many tokens each prediction sees (block_size when None)."""
    prompt = torch.as_tensor(prompt_ids, dtype=torch.long, device=next(model.parameters()).device)
    steps = stream(model, prompt, max_new_tokens, temperature, top_k, top_p, num_samples, seed, use_cache, context)
    new = [token[:, None] for token in steps]
    return torch.cat([prompt.expand(num_samples, -1), *new], dim=1)


def sample_text(
    checkpoint: str | Path,
    prompt: str = DEFAULT_PROMPT,
    max_new_tokens: int = 500,
    temperature: float = DEFAULT_TEMPERATURE,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> str:
    """Load a checkpoint and return the prompt followed by one sampled continuation."""
    from minigpt.checkpoint import load_checkpoint

    check_sampling(max_new_tokens, temperature, top_k, top_p)
    model, tokenizer, _ = load_checkpoint(checkpoint, device=device)
    ids = encode_prompt(tokenizer, prompt, model.cfg.block_size)
    return tokenizer.decode(generate(model, ids, max_new_tokens, temperature, top_k, top_p, seed=seed)[0])


def best_trial(run_dir: str | Path, variant: str | None = None) -> dict[str, Any]:
    """The trial.json record of the run's completed evaluation trial with the lowest
    best_val_loss, among the trials of `variant` when given (a tuning trial is never picked: it
    trained on a tuning seed, at a value that may not be the one chosen)."""
    store = RunStore(run_dir)
    if not store.root.is_dir():
        raise RunSelectionError(f"run directory {store.root} does not exist")
    trials = store.trials()
    if not trials:
        raise RunSelectionError(f"run directory {store.root} holds no trials; train some with `minigpt-bench run`")
    if variant is not None:
        trials = [t for t in trials if t.get("variant") == variant]
        if not trials:
            from minigpt.registry import suggest

            names = sorted({t.get("variant", "?") for t in store.trials()})
            raise RunSelectionError(f"run {store.root} has no trial of variant {variant!r}{suggest(variant, names)}")
    done = [t for t in trials if t.get("status") == "completed" and t.get("best_val_loss") is not None]
    usable = [t for t in done if is_evaluation(t)]
    if not usable:
        statuses = ", ".join(sorted({str(t.get("status")) for t in trials}))
        which = f"of variant {variant!r} " if variant else ""
        raise RunSelectionError(f"run {store.root} has no completed trial {which}to sample from (found: {statuses})")
    return min(usable, key=lambda t: t["best_val_loss"])


def choose_checkpoint(
    run_dir: str | Path | None, checkpoint: str | Path | None, variant: str | None
) -> tuple[Path, str | None]:
    """The checkpoint to load and, when it was picked from a run, a line saying which and why."""
    if (run_dir is None) == (checkpoint is None):
        raise GenerationError("give exactly one of --run RUN_DIR or --checkpoint PATH")
    if checkpoint is not None:
        if variant is not None:
            raise GenerationError("--variant chooses among a run's trials: use it with --run, not --checkpoint")
        return Path(checkpoint), None
    trial = best_trial(run_dir, variant)
    line = (
        f"trial {trial['trial_id']} (variant {trial.get('variant')}, best val loss {trial['best_val_loss']:.4f}) "
        f"of run {run_dir}"
    )
    return RunStore(run_dir).trial_dir(trial["trial_id"]), line


def describe_checkpoint(path: Path, meta: dict[str, Any]) -> str:
    loss = f", val loss {meta['val_loss']:.4f}" if isinstance(meta.get("val_loss"), (int, float)) else ""
    return f"checkpoint {path} (variant {meta.get('variant', 'unknown')}{loss})"


SAMPLE_SEPARATOR = "-" * 15


def write_samples(
    model: GPT,
    tokenizer: CharTokenizer,
    prompt_ids: Sequence[int],
    out: TextIO,
    max_new_tokens: int,
    temperature: float = DEFAULT_TEMPERATURE,
    top_k: int | None = None,
    top_p: float | None = None,
    num_samples: int = 1,
    seed: int = 0,
    context: int | None = None,
) -> list[str]:
    """Write each sample (prompt included) and a newline to `out`: the first one character by
    character as it is drawn, the rest (drawn in the same batch) after it, each preceded by a
    dashed line. Returns the samples."""
    prompt = tokenizer.decode(prompt_ids)
    out.write(prompt)
    out.flush()
    drawn = []
    for tokens in stream(
        model, prompt_ids, max_new_tokens, temperature, top_k, top_p, num_samples, seed, context=context
    ):
        drawn.append(tokens)
        out.write(tokenizer.decode(tokens[:1]))
        out.flush()
    columns = torch.stack(drawn, dim=1) if drawn else torch.empty(num_samples, 0, dtype=torch.long)
    samples = [prompt + tokenizer.decode(row) for row in columns]
    out.write("\n")
    for sample in samples[1:]:
        out.write(f"{SAMPLE_SEPARATOR}\n{sample}\n")
    out.flush()
    return samples
