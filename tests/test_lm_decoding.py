"""Decoding a decoder-only TransformerLM: the cached step gives the full forward pass's logits, and greedy
decoding through `t2t_jax.decoding` continues each sequence with the full model's argmax."""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import small_config
from flax import linen as nn

from t2t_jax.decoding import sampling
from t2t_jax.model import TransformerLM, shift_right
from t2t_jax.model.inference import init_lm_cache, lm_step_fn

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
