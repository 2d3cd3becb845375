"""Relative position representations (Shaw et al. 2018; config.position_encoding='relative'): the attention against
a loop over the paper's formulas, cached decoding against the full decoder, packing, and training from the CLI."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import VOCAB, init_params, random_tokens, small_config
from flax import linen as nn
from train_helpers import TINY_DATA, TINY_MODEL, assert_clear_error, config_flags, run_cli, train_losses

from t2t_jax.model import MultiHeadAttention, Transformer, TransformerConfig, attention_mask, shift_right
from t2t_jax.model.cache import reorder_cache
from t2t_jax.model.inference import init_cache, step_fn

K = 2  # max_relative_position: short, so that the examples below have clipped distances
RELATIVE = dict(position_encoding="relative", max_relative_position=K)


# --- the attention against Shaw et al.'s formulas ----------------------------------------------------------------
def reference_attention(params, x, positions, mask, k):
    """e_ij = q_i (k_j + a^K_ij) / sqrt(d_k), z_i = sum_j softmax_j(e_ij) (v_j + a^V_ij), one head, query and key
    at a time, in float64; a_ij = a[clip(p_j - p_i, -k, k)]. Returns (output [B, L, D], weights [B, H, L, L])."""
    p = {name: np.asarray(value, np.float64) for name, value in
         (("wq", params["query"]["kernel"]), ("wk", params["key"]["kernel"]), ("wv", params["value"]["kernel"]),
          ("wo", params["out"]), ("ak", params["relative_keys"]), ("av", params["relative_values"]))}
    x = np.asarray(x, np.float64)
    batch, length, d_model = x.shape
    heads, key_size = p["wq"].shape[1:]
    output, weights = np.zeros((batch, length, d_model)), np.zeros((batch, heads, length, length))
    for b in range(batch):
        for h in range(heads):
            q, key, v = x[b] @ p["wq"][:, h], x[b] @ p["wk"][:, h], x[b] @ p["wv"][:, h]
            for i in range(length):
                if not mask[b, i].any():  # a padding query with no key: no output to compare
                    continue
                row = [max(-k, min(k, int(positions[b, j] - positions[b, i]))) + k for j in range(length)]
                e = np.array([q[i] @ (key[j] + p["ak"][row[j]]) / np.sqrt(key_size) if mask[b, i, j] else -np.inf
                              for j in range(length)])
                alpha = np.exp(e - e.max())
                alpha /= alpha.sum()
                z = sum(alpha[j] * (v[j] + p["av"][row[j]]) for j in range(length))
                weights[b, h, i] = alpha
                output[b, i] += z @ p["wo"][h]
    return output, weights


@pytest.mark.parametrize("chunk", [0, 3])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_equals_the_papers_formulas(causal, chunk):
    config = TransformerConfig.tiny(vocab_size=VOCAB, d_model=8, num_heads=2, attention_chunk=chunk, **RELATIVE)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 7, 8)), jnp.float32)
    # row 0: two packed examples (positions restart), row 1: one example of 6 and a padding key
    positions = jnp.asarray([[0, 1, 2, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 0]])
    segments = jnp.asarray([[1, 1, 1, 2, 2, 2, 2], [1, 1, 1, 1, 1, 1, 0]])
    mask = attention_mask(segments > 0, segments, segments, causal=causal)  # [2, 1, 7, 7]
    attention = MultiHeadAttention(config)
    params = attention.init(jax.random.PRNGKey(1), x, None, mask, True, positions=positions)["params"]
    params = nn.unbox(params)
    assert params["relative_keys"].shape == params["relative_values"].shape == (2 * K + 1, 4)
    # trained tables are not the initial ones: make the value table count as much as the values do
    params["relative_values"] = params["relative_values"] * 3.0
    output, state = attention.apply({"params": params}, x, None, mask, True, positions=positions,
                                    mutable=["intermediates"])
    expected, expected_weights = reference_attention(params, x, np.asarray(positions), np.asarray(mask[:, 0]), K)
    rows = np.asarray(segments > 0)  # the padding query's row is not an example's
    np.testing.assert_allclose(np.asarray(output)[rows], expected[rows], atol=2e-5)
    if not chunk:  # chunked attention sows no weights
        weights = np.asarray(state["intermediates"]["attention_weights"][0])
        np.testing.assert_allclose(weights[0], expected_weights[0], atol=2e-6)
        np.testing.assert_allclose(weights[1][:, :6], expected_weights[1][:, :6], atol=2e-6)


def test_relative_positions_replace_absolute_ones_and_only_distances_matter():
    config = small_config(**RELATIVE)
    params = init_params(config)
    assert "position_encoding" not in params["encoder"] and "position_encoding" not in params["decoder"]
    assert "relative_keys" not in params["decoder"]["layers_0"]["cross_attention"]  # self-attention only (T2T)
    spec = nn.get_partition_spec(params)["encoder"]["layers_0"]["self_attention"]["relative_keys"]
    assert tuple(spec) == ("relpos", "kv")
    inputs, targets = random_tokens(2, (2, 6)), random_tokens(3, (2, 5))
    model = Transformer(config)
    logits = model.apply({"params": params}, inputs, targets)
    shift = lambda tokens: jnp.broadcast_to(jnp.arange(tokens.shape[1]) + 9, tokens.shape)  # noqa: E731
    shifted = model.apply({"params": params}, inputs, targets, inputs_positions=shift(inputs),
                          targets_positions=shift(targets))
    np.testing.assert_allclose(shifted, logits, atol=1e-5)


# --- packing ------------------------------------------------------------------------------------------------------
def test_a_packed_row_gives_each_example_its_own_outputs():
    config = small_config(**RELATIVE)
    params = init_params(config)
    model = Transformer(config)
    sources = [random_tokens(4, (1, 3)), random_tokens(5, (1, 5))]
    targets = [random_tokens(6, (1, 4)), random_tokens(7, (1, 5))]
    alone = [model.apply({"params": params}, s, t)[0] for s, t in zip(sources, targets)]  # [T_i, V]

    def pack(parts, width):
        """[1, width] tokens, segmentation and positions of parts packed one after another, zero-padded."""
        tokens = np.zeros((1, width), np.int32)
        segmentation, positions = np.zeros_like(tokens), np.zeros_like(tokens)
        start = 0
        for number, part in enumerate(parts, 1):
            length = part.shape[1]
            tokens[0, start:start + length] = part[0]
            segmentation[0, start:start + length] = number
            positions[0, start:start + length] = np.arange(length)
            start += length
        return tuple(jnp.asarray(a) for a in (tokens, segmentation, positions))

    inputs, inputs_segmentation, inputs_positions = pack(sources, 10)
    packed_targets, targets_segmentation, targets_positions = pack(targets, 11)
    logits = model.apply({"params": params}, inputs, packed_targets, inputs_segmentation, inputs_positions,
                         targets_segmentation, targets_positions)[0]
    np.testing.assert_allclose(logits[:4], alone[0], atol=1e-5)
    np.testing.assert_allclose(logits[4:9], alone[1], atol=1e-5)


# --- cached decoding ----------------------------------------------------------------------------------------------
def decoding_setup(config, source_lengths, seed):
    params = nn.unbox(init_params(config))
    rng = np.random.default_rng(seed)
    inputs = rng.integers(2, VOCAB, (len(source_lengths), 6))
    inputs[np.arange(6)[None] >= np.asarray(source_lengths)[:, None]] = 0
    inputs = jnp.asarray(inputs, jnp.int32)
    encoded = Transformer(config).apply({"params": params}, inputs, method=Transformer.encode)
    return params, inputs, encoded


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_cached_step_logits_equal_full_sequence_logits(norm):
    config = small_config(norm_placement=norm, **RELATIVE)
    params, inputs, encoded = decoding_setup(config, [6, 4], seed=0)
    targets = random_tokens(1, (2, 5))  # 5 steps: distances up to 4, clipped at K = 2
    expected = Transformer(config).apply({"params": params}, inputs, targets)  # [2, 5, V]
    cache = init_cache(config, params, encoded, inputs, max_length=5, beam_size=1)
    tokens_to_logits = jax.jit(step_fn(config, params))
    decoder_inputs = shift_right(targets)
    for t in range(5):
        logits, cache = tokens_to_logits(decoder_inputs[:, t:t + 1], cache)
        difference = float(jnp.abs(logits - expected[:, t]).max())
        assert difference <= 1e-4, f"step {t}: max abs difference {difference}"


def test_beam_cache_with_reordering_matches_full_decoder_on_each_hypothesis():
    """Several beams (slots of beam b at b * max_length + t) reordered after every step, as beam search does."""
    config = small_config(**RELATIVE)
    params, inputs, encoded = decoding_setup(config, [6, 3], seed=4)
    items, beams, max_length = 2, 3, 5
    cache = init_cache(config, params, encoded, inputs, max_length=max_length, beam_size=beams)
    tokens_to_logits = jax.jit(step_fn(config, params))
    rng = np.random.default_rng(5)
    histories = np.zeros((items * beams, max_length), np.int32)  # each hypothesis's decoder inputs
    for t in range(max_length):
        if t > 0:
            histories[:, t] = rng.integers(2, VOCAB, items * beams)
        logits, cache = tokens_to_logits(jnp.asarray(histories[:, t:t + 1]), cache)
        targets = np.concatenate([histories[:, 1:], np.zeros((items * beams, 1), np.int32)], axis=1)
        expected = np.zeros_like(logits)
        for beam in range(beams):
            full = Transformer(config).apply({"params": params}, inputs, jnp.asarray(targets[beam::beams]))
            expected[beam::beams] = full[:, t]
        difference = float(jnp.abs(logits - expected).max())
        assert difference <= 1e-4, f"step {t}: max abs difference {difference}"
        parents = rng.integers(0, beams, (items, beams))
        parents[0] = [2, 2, 0]
        cache = reorder_cache(cache, jnp.asarray(parents))
        rows = (np.arange(items)[:, None] * beams + parents).reshape(-1)
        histories = histories[rows]


# --- configuration and the CLI ------------------------------------------------------------------------------------
def test_config_checks_the_relative_settings():
    with pytest.raises(ValueError, match="max_relative_position"):
        TransformerConfig.tiny(vocab_size=VOCAB, position_encoding="relative", max_relative_position=0)
    assert TransformerConfig.tiny(vocab_size=VOCAB, position_encoding="relative").max_relative_position == 20


def test_trains_and_decodes_from_the_cli_and_a_bad_value_is_one_clear_error(tmp_path):
    flags = config_flags(model=dict(TINY_MODEL, position_encoding="relative", max_relative_position=4),
                         data=dict(TINY_DATA, batch_tokens=256, algorithmic_eval_examples=16),
                         train=dict(steps=4, log_every=1, eval_every=4, checkpoint_every=4, warmup_steps=2))
    workdir = str(tmp_path / "relative")
    result = run_cli("train", "--config", "configs/reverse.py", "--workdir", workdir, *flags)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    losses = train_losses(workdir)
    assert len(losses) == 4 and all(np.isfinite(loss) for loss in losses.values())
    decoded = run_cli("decode", "--workdir", workdir, stdin=b"1 2 3\n4 5 6 7 8 9 0 1 2 3\n")
    assert decoded.returncode == 0, decoded.stderr.decode()[-3000:]
    assert len(decoded.stdout.decode().splitlines()) == 2
    bad = run_cli("train", "--config", "configs/reverse.py", "--workdir", str(tmp_path / "bad"),
                  "--config.model.position_encoding=rotary")
    assert_clear_error(bad, "position_encoding", "relative", "rotary")
