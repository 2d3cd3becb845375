"""Generator: a trained decoder-only workdir (model.kind=decoder_only) in, text out.

    generator = Generator.from_workdir("runs/lm")
    generator.generate(["A dog"], temperature=0.8, top_p=0.9, num_samples=2, seed=1)
    # -> [["A dog is running through the grass.", "A dog jumps over a fence."]]
    generator.generate(["A dog"], beam_size=4)                  # the most likely continuation

Each batch of prompts is read in one forward pass (prefill, left-padded to a multiple of 8 tokens), then
continued token by token from the cache: sampling (temperature, top-k, top-p; temperature 0 is greedy) or beam
search (beam_size > 1). A seed makes sampling reproducible. Texts are returned whole: the prompt and its
continuation, decoded together.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from t2t_jax.configuration import model_config
from t2t_jax.data.tokenizer import Tokenizer
from t2t_jax.decoding import beam_search, sample
from t2t_jax.errors import UserError
from t2t_jax.model import TransformerLM
from t2t_jax.model.cache import reorder_cache
from t2t_jax.model.inference import Prompts, decoding_config, init_lm_cache, lm_prompts, lm_step_fn, prefill_lm
from t2t_jax.train.loss import token_losses
from t2t_jax.translate import per_layer, restore_workdir

PROMPT_MULTIPLE = 8  # prompts are left-padded to a multiple of this: few compiled shapes
MAX_BATCH_ROWS = 64  # prompts x samples (or x beams) per compiled call


class Search(NamedTuple):
    """How to continue a prompt (static: each distinct one is a compiled program)."""

    max_length: int  # new tokens at most (EOS included)
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    beam_size: int = 1  # > 1: beam search (temperature, top-k, top-p unused)
    alpha: float = 0.6  # beam search's length penalty

    def check(self, num_samples: int) -> None:
        problems = [
            (self.max_length < 1, f"--max_length must be at least 1, got {self.max_length}"),
            (self.temperature < 0, f"--temperature must be >= 0 (0: greedy), got {self.temperature}"),
            (self.top_k < 0, f"--top_k must be >= 0 (0: all tokens), got {self.top_k}"),
            (not 0 < self.top_p <= 1, f"--top_p must be in (0, 1], got {self.top_p}"),
            (self.beam_size < 1, f"--beam_size must be at least 1, got {self.beam_size}"),
            (num_samples < 1, f"--num_samples must be at least 1, got {num_samples}"),
            (1 < self.beam_size < num_samples,
             f"--num_samples {num_samples} is more than the {self.beam_size} beams beam search keeps"),
        ]
        for failed, message in problems:
            if failed:
                raise UserError(message)


class Generator:
    """Continues prompts with a trained language model."""

    def __init__(self, config: ml_collections.ConfigDict, params: Any, tokenizer: Tokenizer) -> None:
        trained = model_config(config, tokenizer.vocab_size)
        if trained.kind != "decoder_only":
            raise UserError("this workdir holds a translation model (model.kind=encoder_decoder): use t2t-jax decode; "
                            "generate runs language models (model.kind=decoder_only)")
        self.config, self.tokenizer = config, tokenizer
        self.model_config = decoding_config(trained)  # per-layer parameters: the full pass and the cached steps
        self.params = per_layer(trained, params)
        self.step: int | None = None  # the checkpoint's training step, when loaded from a workdir

    @classmethod
    def from_workdir(cls, workdir: str, checkpoint: str = "latest") -> Generator:
        """The language model saved in `workdir`: checkpoint latest | best | averaged | a step number."""
        config, tokenizer, params, step = restore_workdir(workdir, checkpoint, ())
        generator = cls(config, params, tokenizer)
        generator.step = step
        return generator

    def generate(
        self, prompts: Sequence[str], *, max_length: int = 64, temperature: float = 1.0, top_k: int = 0,
        top_p: float = 1.0, beam_size: int = 1, alpha: float = 0.6, num_samples: int = 1, seed: int = 0,
    ) -> list[list[str]]:
        """`num_samples` texts for each prompt (sampled, or beam search's best first), each the prompt continued
        by at most `max_length` tokens. The same seed gives the same samples."""
        search = Search(max_length, temperature, top_k, top_p, beam_size, alpha)
        search.check(num_samples)
        prompt_ids = [self.tokenizer.encode(prompt) for prompt in prompts]
        rows_per_prompt = beam_size if beam_size > 1 else num_samples
        per_batch = max(MAX_BATCH_ROWS // rows_per_prompt, 1)
        texts = []
        for batch, start in enumerate(range(0, len(prompt_ids), per_batch)):
            chunk = prompt_ids[start:start + per_batch]
            rng = jax.random.fold_in(jax.random.PRNGKey(seed), batch)
            continuations = self._continue(chunk, search, num_samples, rng)  # [len(chunk), num_samples, length]
            texts += [[self.tokenizer.decode([*ids, *row]) for row in rows] for ids, rows in zip(chunk, continuations)]
        return texts

    def score(self, texts: Sequence[str]) -> list[tuple[float, int]]:
        """Each text's summed log-probability (nats) under the model, EOS included, and its token count: the
        full forward pass over batches of texts padded to a multiple of 8 tokens."""
        sequences = [[*self.tokenizer.encode(text), Tokenizer.EOS_ID] for text in texts]
        order = sorted(range(len(sequences)), key=lambda index: len(sequences[index]))
        scores: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
        for start in range(0, len(order), MAX_BATCH_ROWS):
            rows = order[start:start + MAX_BATCH_ROWS]
            width = -(-max(len(sequences[row]) for row in rows) // PROMPT_MULTIPLE) * PROMPT_MULTIPLE
            tokens = np.zeros((MAX_BATCH_ROWS, width), np.int32)  # one batch size: a program per width
            for index, row in enumerate(rows):
                tokens[index, :len(sequences[row])] = sequences[row]
            log_probs = np.asarray(_scorer(self.model_config)(self.params, tokens))  # [rows, width]
            for index, row in enumerate(rows):
                scores[row] = (float(log_probs[index].sum()), len(sequences[row]))
        return scores

    def _continue(self, prompt_ids: list[list[int]], search: Search, num_samples: int, rng: jax.Array) -> np.ndarray:
        """Token ids of each prompt's continuations [prompts, num_samples, max_length] (EOS, then zeros)."""
        if search.beam_size == 1:
            prompt_ids = [ids for ids in prompt_ids for _ in range(num_samples)]  # each sample is a row
        prompts = _padded(lm_prompts(prompt_ids))
        sequences = _program(self.model_config, search)(self.params, prompts.inputs, prompts.positions,
                                                        prompts.last_tokens, rng)
        sequences = np.asarray(sequences)
        if search.beam_size > 1:  # [prompts, beams, length]: the best num_samples
            return sequences[:, :num_samples]
        return sequences.reshape(-1, num_samples, sequences.shape[-1])


def _padded(prompts: Prompts) -> Prompts:
    """The prefill arrays left-padded to a multiple of PROMPT_MULTIPLE tokens (at least one: a prefill of
    padding only is a no-op for empty prompts)."""
    length = max(-(-prompts.length // PROMPT_MULTIPLE) * PROMPT_MULTIPLE, PROMPT_MULTIPLE)
    pad = ((0, 0), (length - prompts.length, 0))
    return Prompts(np.pad(prompts.inputs, pad), np.pad(prompts.positions, pad, constant_values=-1),
                   prompts.last_tokens)


@functools.lru_cache(maxsize=4)
def _scorer(config: Any) -> Any:
    """tokens [B, T] (EOS-ended, 0-padded) -> log p(token t | tokens before t) [B, T], 0 at padding."""
    model = TransformerLM(config)

    def log_probs(params: Any, tokens: jax.Array) -> jax.Array:
        logits = model.apply({"params": params}, tokens, deterministic=True)  # [B, T, V]
        return jnp.where(tokens > 0, -token_losses(logits, tokens, label_smoothing=0.0)[1], 0.0)

    return jax.jit(log_probs)


@functools.lru_cache(maxsize=16)
def _program(config: Any, search: Search) -> Any:
    """The jitted prefill + search of one model config and search (a Python-level cache of compiled programs)."""

    def run(params: Any, inputs: jax.Array, positions: jax.Array, last_tokens: jax.Array, rng: jax.Array) -> jax.Array:
        items, prompt_length = inputs.shape
        cache = init_lm_cache(config, params, items, prompt_length + search.max_length, search.beam_size)
        cache = prefill_lm(config, params, cache, Prompts(inputs, positions, last_tokens))[1]
        max_lengths = jnp.full((items,), search.max_length)
        step = lm_step_fn(config, params)
        if search.beam_size > 1:
            return beam_search(step, cache, max_lengths, max_length=search.max_length, beam_size=search.beam_size,
                               alpha=search.alpha, eos_id=Tokenizer.EOS_ID, start_id=last_tokens,
                               reorder_cache=reorder_cache).sequences
        return sample(step, cache, max_lengths, rng, max_length=search.max_length, temperature=search.temperature,
                      top_k=search.top_k, top_p=search.top_p, eos_id=Tokenizer.EOS_ID, start_id=last_tokens).sequences

    return jax.jit(run)
