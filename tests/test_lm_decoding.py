"""Decoding a decoder-only TransformerLM: the cached step gives the full forward pass's logits, and so does a
prefill of left-padded prompts followed by steps; beam search over a toy LM finds the exhaustive best; samples
follow the model's distribution."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from conftest import small_config
from flax import linen as nn

from t2t_jax.decoding import beam_search, sampling
from t2t_jax.model import TransformerLM, shift_right
from t2t_jax.model.cache import reorder_cache
from t2t_jax.model.inference import init_lm_cache, lm_prompts, lm_step_fn, prefill_lm

VOCAB = 19
CONFIG = small_config(vocab_size=VOCAB, max_length=32)


def params():
    return nn.unbox(TransformerLM(CONFIG).init(jax.random.PRNGKey(0), jnp.ones((1, 6), jnp.int32))["params"])


def test_cached_lm_step_logits_equal_full_sequence_logits():
    weights = params()
    targets = jnp.asarray(np.random.default_rng(0).integers(2, VOCAB, (3, 6)), jnp.int32)
    expected = TransformerLM(CONFIG).apply({"params": weights}, targets)  # [3, 6, V]
    cache = init_lm_cache(CONFIG, weights, batch_size=3, max_length=6)
    step = jax.jit(lm_step_fn(CONFIG, weights))
    previous = shift_right(targets)  # step t sees token t - 1 (0 = start)
    for t in range(6):
        logits, cache = step(previous[:, t:t + 1], cache)
        difference = float(jnp.abs(logits - expected[:, t]).max())
        assert difference <= 1e-4, f"step {t}: max abs difference {difference}"


def test_sampled_lm_sequences_score_as_the_full_model_scores_them():
    weights = params()
    length, eos = 8, 1
    result = sampling.sample(lm_step_fn(CONFIG, weights), init_lm_cache(CONFIG, weights, 4, length),
                             jnp.full((4,), length), jax.random.PRNGKey(3), max_length=length, eos_id=eos)
    tokens = np.asarray(result.sequences)  # [4, 8]: EOS forced at the last step, zeros after an EOS
    log_probs = np.asarray(jax.nn.log_softmax(TransformerLM(CONFIG).apply({"params": weights}, jnp.asarray(tokens))))
    assert len(set(map(tuple, tokens))) > 1  # the rows are really sampled
    for row, sequence in enumerate(tokens):
        end = int(np.argmax(sequence == eos))  # the first EOS
        expected = sum(log_probs[row, t, sequence[t]] for t in range(end))
        if end < length - 1:  # sampled, not forced by the length limit (a forced EOS has probability 1)
            expected += log_probs[row, end, eos]
        np.testing.assert_allclose(result.log_probs[row], expected, rtol=1e-4, atol=1e-4)


# --- prompts: prefill, beam search over the LM, sampling from its distribution -------------------------------------

PROMPTS = [[5, 7, 9, 11], [3], [], [12, 4]]  # different lengths: left-padded to 4 in one prefill


def full_log_probs(config, weights, sequence):
    """log p(token t | tokens before t) of one unpadded sequence by the full forward pass [len, V]."""
    tokens = jnp.asarray([sequence], jnp.int32)
    return np.asarray(jax.nn.log_softmax(TransformerLM(config).apply({"params": weights}, tokens)[0]))


@pytest.mark.parametrize("encoding", ["sinusoidal", "learned", "relative"])
def test_prefill_then_steps_give_the_full_forward_pass_of_each_prompt(encoding):
    config = CONFIG.replace(position_encoding=encoding, max_relative_position=3)
    weights = nn.unbox(TransformerLM(config).init(jax.random.PRNGKey(1), jnp.ones((1, 6), jnp.int32))["params"])
    continuations = np.random.default_rng(0).integers(2, VOCAB, (len(PROMPTS), 3))
    prompt = lm_prompts(PROMPTS)
    cache = init_lm_cache(config, weights, len(PROMPTS), prompt.length + 3)
    prefill_logits, cache = prefill_lm(config, weights, cache, prompt)  # [4, P, V]
    step = jax.jit(lm_step_fn(config, weights))
    previous = np.concatenate([prompt.last_tokens[:, None], continuations[:, :-1]], axis=1)  # [4, 3]
    step_logits = []
    for t in range(3):
        logits, cache = step(jnp.asarray(previous[:, t:t + 1]), cache)
        step_logits.append(np.asarray(logits))
    for row, ids in enumerate(PROMPTS):
        expected = full_log_probs(config, weights, [*ids, *continuations[row]])  # [n + 3, V]
        n = len(ids)
        got = [jax.nn.log_softmax(prefill_logits[row, prompt.length - n + t]) for t in range(n)]
        got += [jax.nn.log_softmax(logits[row]) for logits in step_logits]
        np.testing.assert_allclose(np.stack(got), expected, atol=2e-4, err_msg=f"prompt {ids}")


def exhaustive_best(config, weights, prompt, max_new, alpha, eos=1):
    """Every continuation of `prompt` of 1..max_new tokens that ends in EOS (the only token allowed at the limit,
    at its own probability), scored as beam search scores it (log-probability / GNMT length penalty):
    [(score, tokens)], best first."""
    scored = []
    for length in range(1, max_new + 1):
        for body in itertools.product(range(VOCAB_TOY), repeat=length - 1):
            if eos in body:
                continue
            sequence = [*body, eos]
            log_probs = full_log_probs(config, weights, [*prompt, *sequence])[len(prompt):]  # after the prompt
            total = sum(log_probs[t, token] for t, token in enumerate(sequence))  # a forced EOS too
            scored.append((total / ((5 + length) / 6) ** alpha, sequence))
    return sorted(scored, key=lambda item: -item[0])


VOCAB_TOY = 4


def test_beam_search_over_a_toy_lm_with_a_prompt_finds_the_exhaustive_best():
    """With beams enough to keep every live prefix (the 3^3 non-EOS prefixes before the limit), beam search is
    exact: its finished hypotheses are the best of all 1 + 3 + 9 + 27 continuations, with their scores."""
    config = small_config(vocab_size=VOCAB_TOY, max_length=16)
    weights = nn.unbox(TransformerLM(config).init(jax.random.PRNGKey(2), jnp.ones((1, 4), jnp.int32))["params"])
    prompts, max_new, beams, alpha = [[2, 3, 2], [3]], 4, 27, 0.6
    prompt = lm_prompts(prompts)
    cache = init_lm_cache(config, weights, len(prompts), prompt.length + max_new, beam_size=beams)
    cache = prefill_lm(config, weights, cache, prompt)[1]
    result = beam_search(
        lm_step_fn(config, weights), cache, jnp.full((len(prompts),), max_new), max_length=max_new,
        beam_size=beams, alpha=alpha, start_id=jnp.asarray(prompt.last_tokens), reorder_cache=reorder_cache)
    for row, ids in enumerate(prompts):
        expected = exhaustive_best(config, weights, ids, max_new, alpha)[:5]
        for rank, (score, sequence) in enumerate(expected):
            got = [int(t) for t in result.sequences[row, rank][:len(sequence)]]
            assert got == sequence, f"prompt {ids} rank {rank}: {got} != {sequence}"
            np.testing.assert_allclose(float(result.scores[row, rank]), score, rtol=1e-4, atol=1e-5)


def test_samples_follow_the_lm_distribution_after_a_prompt():
    """4000 samples of two tokens after a prompt, with a seed: the first token's counts pass a chi-square test
    against the model's distribution, and so do the second token's counts after the most frequent first token;
    with temperature 0.5 the counts follow the sharpened distribution (and fail the unsharpened one)."""
    config = small_config(vocab_size=6, max_length=16)
    weights = nn.unbox(TransformerLM(config).init(jax.random.PRNGKey(4), jnp.ones((1, 4), jnp.int32))["params"])
    ids, samples = [2, 3, 4], 4000
    first = full_log_probs(config, weights, [*ids, 0])[len(ids)]  # [V] the next token's after the prompt

    def draw(temperature, seed):
        prompt = lm_prompts([ids] * samples)
        cache = prefill_lm(config, weights, init_lm_cache(config, weights, samples, len(ids) + 2), prompt)[1]
        result = sampling.sample(lm_step_fn(config, weights), cache, jnp.full((samples,), 3), jax.random.PRNGKey(seed),
                                 max_length=3, temperature=temperature, eos_id=99, start_id=prompt.last_tokens)
        return np.asarray(result.sequences)

    def p_value(tokens, log_probs):
        counts = np.bincount(tokens, minlength=len(log_probs))
        probabilities = np.exp(log_probs.astype(np.float64))
        return scipy.stats.chisquare(counts, probabilities / probabilities.sum() * len(tokens)).pvalue

    tokens = draw(1.0, seed=0)
    assert p_value(tokens[:, 0], first) > 1e-3
    common = int(np.bincount(tokens[:, 0]).argmax())
    second = full_log_probs(config, weights, [*ids, common, 0])[len(ids) + 1]
    assert p_value(tokens[tokens[:, 0] == common, 1], second) > 1e-3
    sharp = draw(0.5, seed=1)[:, 0]
    assert p_value(sharp, np.asarray(jax.nn.log_softmax(first / 0.5))) > 1e-3
    assert p_value(sharp, first) < 1e-6
    np.testing.assert_array_equal(draw(1.0, seed=0), tokens)  # a seed makes sampling reproducible
