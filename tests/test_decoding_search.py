"""Beam search, greedy decoding and sampling on toy Markov-chain models whose best sequences are known.

The toy model's next-token distribution depends only on the previous token (and on the batch item):
tokens_to_logits(ids, cache) = log_transitions[item, ids]. Its cache is a generic batch-major pytree (the item
index), so beam search expands and reorders it itself. Sequences are scored here by hand, in float64, and
compared with exhaustive enumeration or with a plain-Python beam search that never stops early.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t2t_jax.decoding import beam_search, filter_logits, greedy, length_penalty, sample

EOS = 1
START = 0


# ------------------------------------------------------------------------------------------------- toy model
def markov_model(log_transitions):
    """tokens_to_logits and a generic cache for a [batch, vocab, vocab] (or [vocab, vocab]) table of logits."""
    table = jnp.asarray(log_transitions, jnp.float32)
    if table.ndim == 2:
        table = table[None]
    batch = table.shape[0]

    def tokens_to_logits(ids, cache):  # ids [N, 1]; cache {"item": [N]}
        assert ids.shape == (cache["item"].shape[0], 1)
        return table[cache["item"], ids[:, 0]], cache

    return tokens_to_logits, {"item": jnp.arange(batch, dtype=jnp.int32)}


def chain(probabilities):
    """Logits from a row-stochastic [vocab, vocab] (or [batch, vocab, vocab]) matrix; zeros become ~impossible."""
    return np.log(np.maximum(np.asarray(probabilities, np.float64), 1e-30))


def random_chain(seed, vocab, batch=None, eos_scale=1.0, sharpness=2.0):
    rng = np.random.default_rng(seed)
    shape = (vocab, vocab) if batch is None else (batch, vocab, vocab)
    logits = sharpness * rng.normal(size=shape)
    logits[..., EOS] += np.log(eos_scale)
    return logits


def log_softmax64(logits):
    """The model's log-probabilities: log_softmax in float32 (as decoding does), then float64 for sums."""
    return np.asarray(jax.nn.log_softmax(jnp.asarray(logits, jnp.float32)), np.float64)


def sequence_log_prob(log_probs, tokens):
    """log P(tokens) under a [vocab, vocab] table of log-probabilities, starting from START."""
    previous, total = START, 0.0
    for token in tokens:
        total += log_probs[previous, token]
        previous = token
    return total


def sampled_log_prob(log_probs, tokens, limit):
    """Greedy/sampling's log-probability: under the filtered distribution, where an EOS forced at the item's
    length limit has probability 1 (beam search instead scores it with the model's own EOS probability)."""
    total = sequence_log_prob(log_probs, tokens)
    if len(tokens) >= limit:
        total -= log_probs[tokens[-2] if len(tokens) > 1 else START, EOS]
    return total


def penalty(length, alpha):
    return ((5.0 + length) / 6.0) ** alpha


def trim(sequence):
    """Tokens up to and including the first EOS (the whole row if none)."""
    sequence = [int(t) for t in sequence]
    return tuple(sequence[: sequence.index(EOS) + 1]) if EOS in sequence else tuple(sequence)


# ------------------------------------------------------------------------------------------------- runners
@functools.cache
def _jitted_beam_search(max_length, beam_size):
    def run(log_transitions, max_lengths, alpha):  # alpha traced: one compile for every alpha
        tokens_to_logits, cache = markov_model(log_transitions)
        return beam_search(
            tokens_to_logits, cache, max_lengths, max_length=max_length, beam_size=beam_size, alpha=alpha, eos_id=EOS
        )

    return jax.jit(run)


def run_beam_search(logits, max_lengths, *, max_length, beam_size, alpha):
    logits = np.asarray(logits, np.float32)
    if logits.ndim == 2:
        logits = logits[None]
    result = _jitted_beam_search(max_length, beam_size)(
        jnp.asarray(logits), jnp.asarray(max_lengths, jnp.int32), jnp.float32(alpha)
    )
    return np.asarray(result.sequences), np.asarray(result.scores)


@functools.cache
def _jitted_sample(max_length, temperature, top_k, top_p):
    def run(log_transitions, max_lengths, rng):
        tokens_to_logits, cache = markov_model(log_transitions)
        return sample(
            tokens_to_logits, cache, max_lengths, rng, max_length=max_length, temperature=temperature, top_k=top_k,
            top_p=top_p, eos_id=EOS,
        )

    return jax.jit(run)


def run_sample(logits, max_lengths, rng, *, max_length, temperature=1.0, top_k=0, top_p=1.0):
    result = _jitted_sample(max_length, temperature, top_k, top_p)(
        jnp.asarray(logits, jnp.float32), jnp.asarray(max_lengths, jnp.int32), rng
    )
    return np.asarray(result.sequences), np.asarray(result.log_probs)


def run_greedy(logits, max_lengths, *, max_length):
    logits = np.asarray(logits, np.float32)
    if logits.ndim == 2:
        logits = logits[None]
    tokens_to_logits, cache = markov_model(logits)
    result = jax.jit(functools.partial(greedy, tokens_to_logits, max_length=max_length, eos_id=EOS))(
        cache, jnp.asarray(max_lengths, jnp.int32)
    )
    return np.asarray(result.sequences), np.asarray(result.log_probs)


# ------------------------------------------------------------------------------------------------- references
def all_hypotheses(log_probs, max_length, alpha):
    """Every complete hypothesis (ending with EOS, at most max_length tokens), best first: [(score, tokens)]."""
    vocab = log_probs.shape[0]
    others = [t for t in range(vocab) if t != EOS]
    hypotheses = []
    for length in range(1, max_length + 1):
        for prefix in itertools.product(others, repeat=length - 1):
            tokens = prefix + (EOS,)
            hypotheses.append((sequence_log_prob(log_probs, tokens) / penalty(length, alpha), tokens))
    return sorted(hypotheses, key=lambda h: -h[0])


def reference_beam_search(log_probs, max_length, beam_size, alpha):
    """The same beam search in plain Python, without early stopping: always runs max_length steps.

    Per step, the 2 * beam best extensions of the live hypotheses are considered; those ending in EOS and ranked
    among the beam best are finished (score = log P / lp(length)), the beam best others stay live. At the last
    step only EOS is allowed.
    """
    vocab = log_probs.shape[0]
    live, finished = [((), 0.0)], []
    for length in range(1, max_length + 1):
        candidates = []
        for tokens, total in live:
            previous = tokens[-1] if tokens else START
            for token in range(vocab):
                if length >= max_length and token != EOS:
                    continue
                candidates.append((total + log_probs[previous, token], tokens + (token,)))
        candidates = sorted(candidates, key=lambda c: -c[0])[: 2 * beam_size]
        finished += [(total / penalty(length, alpha), tokens) for total, tokens in candidates[:beam_size]
                     if tokens[-1] == EOS]  # only EOS candidates ranked among the beam best end a hypothesis
        live = [(tokens, total) for total, tokens in candidates if tokens[-1] != EOS][:beam_size]
    return sorted(finished, key=lambda f: -f[0])[:beam_size]


def reference_greedy(log_probs, max_length):
    tokens = []
    while not tokens or tokens[-1] != EOS:
        previous = tokens[-1] if tokens else START
        row = log_probs[previous].copy()
        if len(tokens) + 1 >= max_length:
            row[np.arange(len(row)) != EOS] = -np.inf
        tokens.append(int(np.argmax(row)))
    return tuple(tokens)


def assert_matches(sequences, scores, expected, context=""):
    """sequences [beam, L] / scores [beam] against [(score, tokens)] best first."""
    assert len(expected) == len(scores), context
    for k, (score, tokens) in enumerate(expected):
        assert trim(sequences[k]) == tokens, f"{context} hypothesis {k}: {trim(sequences[k])} != {tokens}"
        assert scores[k] == pytest.approx(score, abs=1e-4), f"{context} hypothesis {k}"
        assert np.all(sequences[k, len(tokens):] == 0), f"{context}: not zero after EOS"


# ------------------------------------------------------------------------------------------------- beam search
# vocab: 0 start (never generated), 1 EOS, 2 "a", 3 "b".  From the start, "a" is locally best (0.6 > 0.4),
# but every continuation of "a" is poor while "b" is almost surely followed by EOS.
TRAP = chain([
    [0.0, 0.0, 0.6, 0.4],  # from start
    [0.0, 1.0, 0.0, 0.0],  # after EOS (never used)
    [0.0, 0.4, 0.3, 0.3],  # after a
    [0.0, 0.99, 0.005, 0.005],  # after b
])


def test_beam_search_finds_the_best_sequence_that_greedy_misses():
    log_probs = log_softmax64(TRAP)
    best_score, best_tokens = all_hypotheses(log_probs, 4, alpha=0.0)[0]
    assert best_tokens == (3, EOS) and best_score == pytest.approx(np.log(0.4 * 0.99))

    greedy_sequences, greedy_log_probs = run_greedy(TRAP, [4], max_length=4)
    assert trim(greedy_sequences[0]) == (2, EOS)  # the locally best first token...
    assert greedy_log_probs[0] == pytest.approx(np.log(0.6 * 0.4), abs=1e-5)  # ...leads to a worse total
    assert greedy_log_probs[0] < best_score

    sequences, scores = run_beam_search(TRAP, [4], max_length=4, beam_size=2, alpha=0.0)
    assert trim(sequences[0, 0]) == best_tokens
    assert scores[0, 0] == pytest.approx(best_score, abs=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_n_best_are_sorted_and_scored_by_log_prob_over_length_penalty(alpha):
    logits = random_chain(0, vocab=5, eos_scale=0.3)
    log_probs = log_softmax64(logits)
    sequences, scores = run_beam_search(logits, [6], max_length=6, beam_size=4, alpha=alpha)
    assert scores.dtype == np.float32 and sequences.dtype == np.int32
    assert np.all(np.isfinite(scores[0]))
    assert np.all(np.diff(scores[0]) <= 0), scores
    seen = set()
    for sequence, score in zip(sequences[0], scores[0], strict=True):
        tokens = trim(sequence)
        assert tokens[-1] == EOS and EOS not in tokens[:-1] and tokens not in seen
        seen.add(tokens)
        by_hand = sequence_log_prob(log_probs, tokens) / penalty(len(tokens), alpha)
        assert score == pytest.approx(by_hand, abs=1e-4), tokens


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.5])
def test_wide_beam_equals_exhaustive_enumeration(alpha):
    """With a beam as wide as the number of extensions of all prefixes, beam search is exact: its n-best are
    the true n-best (EOS candidates only end a hypothesis when they rank among the beam best, so the beam must
    hold every candidate, not just every prefix)."""
    vocab, max_length = 4, 4
    logits = random_chain(1, vocab=vocab, eos_scale=0.5)
    expected = all_hypotheses(log_softmax64(logits), max_length, alpha)
    beam = (vocab - 1) ** (max_length - 1) * vocab  # every extension of every live prefix fits
    sequences, scores = run_beam_search(logits, [max_length], max_length=max_length, beam_size=beam, alpha=alpha)
    found = len(expected)  # all 40 complete hypotheses; the beam's other slots stay empty
    assert_matches(sequences[0][:found], scores[0][:found], expected, f"alpha={alpha}")
    assert np.all(np.isneginf(scores[0][found:]))


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0, 3.0])
@pytest.mark.parametrize("beam_size", [1, 2, 3])
def test_early_stopping_is_exact(alpha, beam_size):
    """The result equals the same search run for all max_length steps (no early stop), per item, with each
    item's own max length; with a length penalty (alpha > 0) stopping must account for longer hypotheses."""
    vocab, max_length, batch = 6, 9, 4
    logits = random_chain(2 + beam_size, vocab=vocab, batch=batch, eos_scale=0.5)
    max_lengths = [9, 3, 6, 1]
    sequences, scores = run_beam_search(logits, max_lengths, max_length=max_length, beam_size=beam_size, alpha=alpha)
    for item in range(batch):
        expected = reference_beam_search(log_softmax64(logits[item]), max_lengths[item], beam_size, alpha)
        finite = np.isfinite(scores[item])
        assert finite.sum() == len(expected), f"item {item}"
        assert_matches(sequences[item][finite], scores[item][finite], expected, f"item {item}")


def test_early_stopping_waits_for_longer_hypotheses_under_a_strong_length_penalty():
    """A short hypothesis finishes first with the best raw log-probability; with alpha = 3 a longer one wins.
    Stopping as soon as the finished one beats the live ones' *current* normalized score would miss it."""
    # from start: EOS 0.5, a 0.5; a -> a 0.9 (EOS 0.1 until forced)
    logits = chain([
        [0.0, 0.5, 0.5, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.1, 0.9, 0.0],
        [0.0, 1.0, 0.0, 0.0],
    ])
    log_probs = log_softmax64(logits)
    alpha, max_length = 3.0, 8
    expected = all_hypotheses(log_probs, max_length, alpha)
    assert len(expected[0][1]) > 1  # the best hypothesis is long
    sequences, scores = run_beam_search(logits, [max_length], max_length=max_length, beam_size=1, alpha=alpha)
    assert trim(sequences[0, 0]) == expected[0][1]
    assert scores[0, 0] == pytest.approx(expected[0][0], abs=1e-5)


def test_length_penalty_formula():
    lengths = jnp.array([1, 2, 5, 10, 50])
    for alpha in (0.0, 0.6, 1.0, 2.0):
        np.testing.assert_allclose(
            length_penalty(lengths, alpha), ((5.0 + np.array([1, 2, 5, 10, 50])) / 6.0) ** alpha, rtol=1e-6
        )
        assert length_penalty(jnp.array(1), alpha) == pytest.approx(1.0)  # lp(1) = 1 for every alpha
    assert length_penalty(jnp.array([3]), 0.6).dtype == jnp.float32


def test_max_lengths_are_honoured_per_item_and_eos_forced_at_the_limit():
    # EOS is unlikely everywhere (1e-4), the chain 2 -> 3 -> 4 -> 2 is almost certain: with alpha = 1 the best
    # hypotheses run to their item's limit and end there with a forced EOS.
    vocab = 5
    probabilities = np.full((vocab, vocab), 1e-4)
    for previous, following in ((0, 2), (2, 3), (3, 4), (4, 2), (1, 1)):
        probabilities[previous, following] = 1.0
    logits = chain(probabilities)
    max_lengths = [3, 8, 1, 5, 20]  # 20 exceeds max_length and is clipped to it
    max_length = 10
    batch = len(max_lengths)
    sequences, scores = run_beam_search(
        np.broadcast_to(logits, (batch, vocab, vocab)), max_lengths, max_length=max_length, beam_size=2, alpha=1.0
    )
    assert sequences.shape == (batch, 2, max_length)
    for item, limit in enumerate(max_lengths):
        limit = min(limit, max_length)
        best = trim(sequences[item, 0])
        assert len(best) == limit and best[-1] == EOS, (item, best)
        assert best[:-1] == ((2, 3, 4) * 10)[: limit - 1]
        for sequence, score in zip(sequences[item], scores[item], strict=True):
            if np.isfinite(score):
                tokens = trim(sequence)
                assert tokens[-1] == EOS and len(tokens) <= limit, (item, tokens)
                assert np.all(sequence[len(tokens):] == 0)
    # sampling honours them too: a chain that never emits EOS by itself ends at each item's limit
    never_eos = np.where(probabilities == 1.0, 1.0, 0.0)  # not even a small chance of leaving the chain
    samples, _ = run_sample(
        np.broadcast_to(chain(never_eos), (batch, vocab, vocab)), max_lengths, jax.random.PRNGKey(0),
        max_length=max_length,
    )
    for item, limit in enumerate(max_lengths):
        limit = min(limit, max_length)
        assert trim(samples[item]) == ((2, 3, 4) * 10)[: limit - 1] + (EOS,), item


def test_batch_items_are_decoded_independently():
    logits = random_chain(7, vocab=6, batch=3, eos_scale=0.5)
    max_lengths = [7, 4, 6]
    together = run_beam_search(logits, max_lengths, max_length=7, beam_size=3, alpha=0.6)
    for item in range(3):
        alone = run_beam_search(logits[item:item + 1], max_lengths[item:item + 1], max_length=7, beam_size=3,
                                alpha=0.6)
        np.testing.assert_array_equal(alone[0][0], together[0][item])
        np.testing.assert_allclose(alone[1][0], together[1][item], atol=1e-6)


# ------------------------------------------------------------------------------------------------- greedy
def low_eos_chain(seed, vocab=7, batch=4):
    """A random chain where EOS is rare (it is never the runner-up), so beam 1 never keeps an early EOS."""
    logits = random_chain(seed, vocab=vocab, batch=batch)
    logits[..., EOS] = -30.0
    logits[..., 3, EOS] = logits[..., 3, :].max(-1) + 1.0  # EOS is the top choice after token 3
    return logits


def test_greedy_follows_the_argmax():
    logits = random_chain(9, vocab=7, batch=4, eos_scale=0.7)
    max_lengths = [10, 5, 2, 8]
    sequences, log_probs = run_greedy(logits, max_lengths, max_length=10)
    for item in range(4):
        item_log_probs = log_softmax64(logits[item])
        expected = reference_greedy(item_log_probs, max_lengths[item])
        assert trim(sequences[item]) == expected
        by_hand = sampled_log_prob(item_log_probs, expected, max_lengths[item])
        assert log_probs[item] == pytest.approx(by_hand, abs=1e-4)


@pytest.mark.parametrize("seed", [10, 11])
def test_beam_size_one_with_alpha_zero_equals_greedy(seed):
    logits = low_eos_chain(seed)
    max_lengths = [10, 6, 3, 9]
    greedy_sequences, greedy_log_probs = run_greedy(logits, max_lengths, max_length=10)
    sequences, scores = run_beam_search(logits, max_lengths, max_length=10, beam_size=1, alpha=0.0)
    np.testing.assert_array_equal(sequences[:, 0], greedy_sequences)
    assert any(len(trim(row)) == limit for row, limit in zip(greedy_sequences, max_lengths, strict=True))
    assert any(len(trim(row)) < limit for row, limit in zip(greedy_sequences, max_lengths, strict=True))
    for item, limit in enumerate(max_lengths):
        tokens = trim(greedy_sequences[item])
        item_log_probs = log_softmax64(logits[item])
        # the same path; scores differ only by convention for an EOS forced at the limit (see sampled_log_prob)
        assert scores[item, 0] == pytest.approx(sequence_log_prob(item_log_probs, tokens), abs=1e-4)
        assert greedy_log_probs[item] == pytest.approx(sampled_log_prob(item_log_probs, tokens, limit), abs=1e-4)


def test_beam_size_one_equals_greedy_when_eos_is_the_runner_up():
    """DESIGN.md promises "beam 1 equals greedy". Here greedy's first token "a" (0.6) beats EOS (0.4), and
    greedy ends [a, EOS] with probability 0.6 * 0.5 = 0.3. A beam of 1 must follow the same single path; a
    search that also finishes the runner-up EOS (from its 2 * beam candidates) returns [EOS] (0.4) instead."""
    logits = chain([
        [0.0, 0.4, 0.6, 0.0],  # from start: EOS 0.4, a 0.6
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.5, 0.25, 0.25],  # after a
        [0.0, 1.0, 0.0, 0.0],
    ])
    greedy_sequences, greedy_log_probs = run_greedy(logits, [5], max_length=5)
    assert trim(greedy_sequences[0]) == (2, EOS)
    sequences, scores = run_beam_search(logits, [5], max_length=5, beam_size=1, alpha=0.0)
    assert trim(sequences[0, 0]) == trim(greedy_sequences[0]), "beam_size=1, alpha=0 differs from greedy"
    assert scores[0, 0] == pytest.approx(greedy_log_probs[0], abs=1e-5)


# ------------------------------------------------------------------------------------------------- sampling
def test_temperature_zero_is_greedy_whatever_the_rng():
    logits = random_chain(12, vocab=7, batch=4, eos_scale=0.7)
    max_lengths = [10, 5, 2, 8]
    greedy_sequences, greedy_log_probs = run_greedy(logits, max_lengths, max_length=10)
    for seed in (0, 1):
        sequences, log_probs = run_sample(logits, max_lengths, jax.random.PRNGKey(seed), max_length=10,
                                          temperature=0.0)
        np.testing.assert_array_equal(sequences, greedy_sequences)
        np.testing.assert_allclose(log_probs, greedy_log_probs, atol=1e-6)


def test_top_k_one_is_greedy_whatever_the_rng():
    logits = random_chain(13, vocab=7, batch=4, eos_scale=0.7)
    max_lengths = [10, 5, 2, 8]
    greedy_sequences, _ = run_greedy(logits, max_lengths, max_length=10)
    for seed in (0, 1, 2):
        sequences, log_probs = run_sample(logits, max_lengths, jax.random.PRNGKey(seed), max_length=10, top_k=1)
        np.testing.assert_array_equal(sequences, greedy_sequences)
        np.testing.assert_allclose(log_probs, 0.0, atol=1e-6)  # one allowed token per step: probability 1


def test_filter_logits_top_p_keeps_the_smallest_set_reaching_p():
    probabilities = np.array([0.1, 0.5, 0.15, 0.25])  # sorted: 0.5, 0.25, 0.15, 0.1
    logits = jnp.asarray(np.log(probabilities), jnp.float32)
    for top_p, kept in [(0.3, {1}), (0.6, {1, 3}), (0.7, {1, 3}), (0.8, {1, 3, 2}), (0.95, {0, 1, 2, 3}),
                        (1.0, {0, 1, 2, 3})]:
        filtered = np.asarray(filter_logits(logits, top_p=top_p))
        assert set(np.flatnonzero(np.isfinite(filtered))) == kept, top_p
        np.testing.assert_array_equal(filtered[sorted(kept)], np.asarray(logits)[sorted(kept)])
        assert np.all(filtered[[i for i in range(4) if i not in kept]] == -np.inf)
    # rows are filtered independently, and a tiny p still keeps the most likely token
    batch = jnp.stack([logits, logits[::-1]])
    filtered = np.asarray(filter_logits(batch, top_p=0.01))
    assert [set(np.flatnonzero(np.isfinite(row))) for row in filtered] == [{1}, {2}]


def test_filter_logits_top_k_and_both():
    logits = jnp.array([[1.0, 4.0, 3.0, 2.0, 0.0]])
    filtered = np.asarray(filter_logits(logits, top_k=2))
    assert set(np.flatnonzero(np.isfinite(filtered[0]))) == {1, 2}
    np.testing.assert_array_equal(np.asarray(filter_logits(logits)), np.asarray(logits))  # defaults: no-op
    # top_k first, then top_p over what is left: softmax([4, 3]) = [0.73, 0.27]
    both = np.asarray(filter_logits(logits, top_k=3, top_p=0.6))
    assert set(np.flatnonzero(np.isfinite(both[0]))) == {1}


def allowed_tokens(log_probs_row, top_k=0, top_p=1.0):
    order = np.argsort(-log_probs_row)
    if top_k:
        order = order[:top_k]
    probabilities = np.exp(log_probs_row[order]) / np.exp(log_probs_row[order]).sum()
    needed = int(np.searchsorted(np.cumsum(probabilities), top_p - 1e-9)) + 1
    return set(order[:needed].tolist())


@pytest.mark.parametrize("top_k, top_p", [(2, 1.0), (0, 0.6), (3, 0.8)])
def test_samples_use_only_allowed_tokens(top_k, top_p):
    vocab, batch = 8, 64
    logits = np.broadcast_to(random_chain(14, vocab=vocab, eos_scale=0.5, sharpness=1.0), (batch, vocab, vocab))
    sequences, _ = run_sample(logits, [12] * batch, jax.random.PRNGKey(3), max_length=12, top_k=top_k, top_p=top_p)
    log_probs = log_softmax64(logits[0])
    used = set()
    for row in sequences:
        previous = START
        tokens = trim(row)
        for position, token in enumerate(tokens):
            if position + 1 < 12:  # at the limit EOS is forced
                assert token in allowed_tokens(log_probs[previous], top_k, top_p), (previous, token)
            used.add((previous, token))
            previous = token
    # not degenerate: several distinct tokens were sampled after the start
    assert len({token for previous, token in used if previous == START}) > 1


def test_sampling_is_deterministic_per_rng():
    vocab, batch = 8, 16
    logits = np.broadcast_to(random_chain(15, vocab=vocab, eos_scale=0.3, sharpness=1.0), (batch, vocab, vocab))
    first = run_sample(logits, [10] * batch, jax.random.PRNGKey(5), max_length=10)
    again = run_sample(logits, [10] * batch, jax.random.PRNGKey(5), max_length=10)
    other = run_sample(logits, [10] * batch, jax.random.PRNGKey(6), max_length=10)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    # every sampled sequence ends with EOS (or at the limit) and is zero after it; its log-prob is its own
    log_probs = log_softmax64(logits[0])
    for row, total in zip(first[0], first[1], strict=True):
        tokens = trim(row)
        assert tokens[-1] == EOS and np.all(row[len(tokens):] == 0)
        assert total == pytest.approx(sampled_log_prob(log_probs, tokens, 10), abs=1e-4)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_first_token_frequencies_follow_the_tempered_distribution(temperature):
    vocab, batch = 6, 4000
    logits = np.zeros((vocab, vocab))
    logits[START] = [-50.0, 0.0, 1.0, 0.5, -0.5, 0.2]
    # (max_lengths 1 would force EOS at once: length 2 leaves the first token free)
    sequences, _ = run_sample(
        np.broadcast_to(logits, (batch, vocab, vocab)), [2] * batch, jax.random.PRNGKey(7), max_length=2,
        temperature=temperature,
    )
    frequencies = np.bincount(sequences[:, 0], minlength=vocab) / batch
    expected = np.asarray(jax.nn.softmax(jnp.asarray(logits[START]) / temperature))
    np.testing.assert_allclose(frequencies, expected, atol=0.03)
