"""Cached (KV) decoding of the Transformer: step logits equal full-sequence logits, the beam-aware cache and its
reordering, beam search against a reference that recomputes the whole decoder, batch independence, no tensorflow."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import VOCAB, init_params, modules_loaded, random_tokens, small_config
from flax import linen as nn

from t2t_jax.decoding import beam_search
from t2t_jax.model import Transformer, shift_right
from t2t_jax.model.cache import reorder_cache
from t2t_jax.model.inference import init_cache, step_fn, unstack_layers

EOS = 1
EOS_PENALTY = 4.0  # subtracted from the EOS logit so that hypotheses run long


def unboxed_params(config):
    """init_params(config), unboxed. The model runs op by op (eager) outside beam search: for this tiny model that
    is much faster than compiling it, as long as shapes repeat ([2, 6] sources and [2, 5] targets, as in
    test_model_transformer.py); the step functions are jitted."""
    return nn.unbox(init_params(config))


def encode(config, params, inputs):
    return Transformer(config).apply({"params": params}, inputs, method=Transformer.encode)


def full_logits(config, params, inputs, targets):
    return Transformer(config).apply({"params": params}, inputs, targets)


def sources(lengths, width, seed):
    """[len(lengths), width] source tokens (no EOS or 0 inside), each row padded with zeros after its length."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(2, VOCAB, (len(lengths), width))
    tokens[np.arange(width)[None] >= np.asarray(lengths)[:, None]] = 0
    return jnp.asarray(tokens, jnp.int32)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_cached_step_logits_equal_full_sequence_logits(norm):
    config = small_config(norm_placement=norm)
    params = unboxed_params(config)
    inputs = sources([6, 4], 6, seed=0)  # the second source is padded
    targets = random_tokens(1, (2, 5))
    expected = full_logits(config, params, inputs, targets)  # [2, 5, V]
    cache = init_cache(config, params, encode(config, params, inputs), inputs, max_length=5, beam_size=1)
    tokens_to_logits = jax.jit(step_fn(config, params))
    decoder_inputs = shift_right(targets)  # step t sees the previous target (0 = start at t = 0)
    for t in range(5):
        logits, cache = tokens_to_logits(decoder_inputs[:, t:t + 1], cache)
        assert logits.shape == (2, VOCAB) and logits.dtype == jnp.float32
        difference = float(jnp.abs(logits - expected[:, t]).max())
        assert difference <= 1e-4, f"step {t}: max abs difference {difference}"


def stack_layers(params):
    """The inverse of unstack_layers: per-layer 'layers_i' parameters stacked under 'layers' (scan layout)."""
    if not isinstance(params, dict):
        return params
    layer_names = sorted((k for k in params if k.startswith("layers_")), key=lambda k: int(k.split("_")[1]))
    stacked = {k: stack_layers(v) for k, v in params.items() if k not in layer_names}
    if layer_names:
        stacked["layers"] = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *(params[k] for k in layer_names))
    return stacked


def test_decoding_a_scan_layers_model_after_unstack():
    """Train with scan_layers=True, decode with unstack_layers(params) and the same config."""
    config = small_config()
    params = unboxed_params(config)
    scanned = stack_layers(params)
    assert "layers" in scanned["decoder"] and "layers_0" not in scanned["decoder"]
    unstacked = unstack_layers(scanned)
    assert jax.tree_util.tree_structure(unstacked) == jax.tree_util.tree_structure(params)
    scan_config = config.replace(scan_layers=True, remat="full")  # decoding ignores both
    inputs = sources([5, 3], 6, seed=2)
    targets = random_tokens(3, (2, 5))
    expected = full_logits(config, params, inputs, targets)
    cache = init_cache(scan_config, unstacked, encode(config, unstacked, inputs), inputs, max_length=5)
    tokens_to_logits = jax.jit(step_fn(scan_config, unstacked))
    decoder_inputs = shift_right(targets)
    for t in range(5):
        logits, cache = tokens_to_logits(decoder_inputs[:, t:t + 1], cache)
        assert float(jnp.abs(logits - expected[:, t]).max()) <= 1e-4, f"step {t}"


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_beam_cache_with_reordering_matches_full_decoder_on_each_hypothesis(norm):
    """Drive the beam-aware cache by hand: items x beams hypotheses with random tokens, reordered by random parents
    after every step (as beam search does); each hypothesis' logits must equal the full decoder on its history."""
    config = small_config(norm_placement=norm)
    params = unboxed_params(config)
    items, beams, max_length = 2, 3, 5
    inputs = sources([6, 3], 6, seed=4)
    encoded = encode(config, params, inputs)
    cache = init_cache(config, params, encoded, inputs, max_length=max_length, beam_size=beams)
    tokens_to_logits = jax.jit(step_fn(config, params))
    rng = np.random.default_rng(5)
    # decoder inputs of each hypothesis so far: [items * beams, max_length], position 0 = start token 0
    histories = np.zeros((items * beams, max_length), np.int32)
    for t in range(max_length):
        if t > 0:
            histories[:, t] = rng.integers(2, VOCAB, items * beams)  # each hypothesis' newest token
        logits, cache = tokens_to_logits(jnp.asarray(histories[:, t:t + 1]), cache)
        # targets whose shift_right is the history (positions after t are irrelevant: the decoder is causal),
        # run as [items, ...] batches, one per beam (the shapes of the other tests: nothing new to compile)
        targets = np.concatenate([histories[:, 1:], np.zeros((items * beams, 1), np.int32)], axis=1)
        expected = np.zeros_like(logits)
        for beam in range(beams):
            expected[beam::beams] = full_logits(config, params, inputs, jnp.asarray(targets[beam::beams]))[:, t]
        difference = float(jnp.abs(logits - expected).max())
        assert difference <= 1e-4, f"step {t}: max abs difference {difference}"
        parents = rng.integers(0, beams, (items, beams))
        parents[0] = [2, 2, 0]  # always some duplication and crossing of beams
        cache = reorder_cache(cache, jnp.asarray(parents, jnp.int32))
        histories = histories[(np.arange(items)[:, None] * beams + parents).reshape(-1)]


# ------------------------------------------------------------------------------------------------- beam search
def discourage_eos(tokens_to_logits):
    def wrapped(ids, cache):
        logits, cache = tokens_to_logits(ids, cache)
        return logits.at[:, EOS].add(-EOS_PENALTY), cache

    return wrapped


def reference_tokens_to_logits(config, params):
    """A step function without any model cache: the generic cache holds the source, its encoding and the token
    history; every step runs the full decoder over the whole (fixed-length) history and reads one position."""
    model = Transformer(config)

    def tokens_to_logits(ids, cache):  # ids [N, 1]
        index = cache["index"]
        history = jax.lax.dynamic_update_index_in_dim(cache["history"], ids[:, 0], index, axis=1)  # [N, L]
        targets = jnp.concatenate([history[:, 1:], jnp.zeros_like(history[:, :1])], axis=1)  # shift_right -> history
        logits = model.apply({"params": params}, cache["encoded"], cache["inputs"], targets, method=Transformer.decode)
        step_logits = jax.lax.dynamic_index_in_dim(logits, index, axis=1, keepdims=False)
        return step_logits, {**cache, "history": history, "index": index + 1}

    return tokens_to_logits


@functools.cache
def beam_searcher(config, max_length, beam_size, alpha, cached):
    """A jitted (params, inputs, max_lengths) -> (sequences, scores) with our cache, or the reference one."""

    def run(params, inputs, max_lengths):
        encoded = encode(config, params, inputs)
        if cached:
            cache = init_cache(config, params, encoded, inputs, max_length=max_length, beam_size=beam_size)
            tokens_to_logits, reorder = step_fn(config, params), reorder_cache
        else:
            cache = {
                "encoded": encoded, "inputs": inputs,
                "history": jnp.zeros((inputs.shape[0], max_length), jnp.int32), "index": jnp.zeros((), jnp.int32),
            }
            tokens_to_logits, reorder = reference_tokens_to_logits(config, params), None
        return beam_search(
            discourage_eos(tokens_to_logits), cache, max_lengths, max_length=max_length, beam_size=beam_size,
            alpha=alpha, eos_id=EOS, reorder_cache=reorder,
        )

    return jax.jit(run)


SOURCE_LENGTHS = [3, 6, 4]
MAX_LENGTH = 10
BEAM = 3
ALPHA = 0.6


def batch_inputs():
    inputs = sources(SOURCE_LENGTHS, 6, seed=6)
    max_lengths = jnp.asarray(SOURCE_LENGTHS, jnp.int32) + 4  # [7, 10, 8]
    return inputs, max_lengths


@functools.cache
def batch_result(cached):
    config = small_config()
    inputs, max_lengths = batch_inputs()
    result = beam_searcher(config, MAX_LENGTH, BEAM, ALPHA, cached)(unboxed_params(config), inputs, max_lengths)
    return np.asarray(result.sequences), np.asarray(result.scores)


def lengths(sequences):
    return np.where(np.any(sequences == EOS, -1), np.argmax(sequences == EOS, -1) + 1, sequences.shape[-1])


def test_beam_search_with_cache_equals_full_recomputation():
    sequences, scores = batch_result(cached=True)
    reference_sequences, reference_scores = batch_result(cached=False)
    assert sequences.shape == (3, BEAM, MAX_LENGTH) and scores.shape == (3, BEAM)
    assert np.all(np.isfinite(scores))
    np.testing.assert_array_equal(sequences, reference_sequences)
    np.testing.assert_allclose(scores, reference_scores, atol=1e-4)
    # the test means something: long hypotheses, each within its own limit, different across beams
    found = lengths(sequences)
    limits = np.asarray(SOURCE_LENGTHS)[:, None] + 4
    assert np.all(found <= limits) and found.mean() > 4, found
    assert all(len({tuple(row) for row in item}) == BEAM for item in sequences)


def test_each_sentence_is_decoded_independently_of_its_batch():
    config = small_config()
    params = unboxed_params(config)
    inputs, max_lengths = batch_inputs()
    sequences, scores = batch_result(cached=True)
    for item in (0,):  # the most padded sentence (each other item costs another compile of beam search)
        alone_inputs = inputs[item:item + 1, : SOURCE_LENGTHS[item]]  # no padding at all
        alone = beam_searcher(config, MAX_LENGTH, BEAM, ALPHA, True)(params, alone_inputs, max_lengths[item:item + 1])
        np.testing.assert_array_equal(np.asarray(alone.sequences[0]), sequences[item], err_msg=f"sentence {item}")
        np.testing.assert_allclose(np.asarray(alone.scores[0]), scores[item], atol=1e-4)


def test_model_and_decoding_import_without_tensorflow():
    loaded = modules_loaded("t2t_jax.model, t2t_jax.decoding, t2t_jax.model.inference",
                            "m.split('.')[0] in ('tensorflow', 'tensorflow_datasets', 'tf_keras')"
                            " or m.startswith('t2t_jax.data')")
    assert loaded == [], f"tensorflow or t2t_jax.data loaded: {loaded}"


def test_the_layers_import_downwards_only():
    """sharding sits below training and decoding; translating (as evaluation during training does) loads
    neither the training loop nor the visualizer."""
    loaded = modules_loaded("t2t_jax.sharding, t2t_jax.translate",
                            "m.startswith(('t2t_jax.visualize', 't2t_jax.train.loop', 't2t_jax.serving'))"
                            " or m == 't2t_jax.train.sharding'")
    assert loaded == [], f"loaded: {loaded}"
