"""Attention capture on an untrained model: shapes, rows summing to 1, masks (padding, packing, causal),
scan_layers, merging pieces into words, and no tensorflow/matplotlib behind the capture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import modules_loaded
from flax import linen as nn

from t2t_jax.model import Transformer, TransformerConfig
from t2t_jax.model.inference import unstack_layers
from t2t_jax.visualize import AttentionMaps, attention_weights, merge_words
from t2t_jax.visualize.words import word_labels, word_spans

CONFIG = TransformerConfig.tiny(vocab_size=20).replace(
    num_heads=4, num_encoder_layers=2, num_decoder_layers=3, dropout_rate=0.3  # dropout must be off in capture
)
# row 0 full; row 1 padded (source 4 of 7 tokens, target 3 of 5)
INPUTS = np.array([[5, 6, 7, 8, 9, 10, 1], [5, 6, 7, 1, 0, 0, 0]], np.int32)  # [batch 2, S 7]
TARGETS = np.array([[11, 12, 13, 14, 1], [11, 12, 1, 0, 0]], np.int32)  # [batch 2, T 5]


@pytest.fixture(scope="module")
def params():
    variables = Transformer(CONFIG).init(jax.random.PRNGKey(0), jnp.asarray(INPUTS), jnp.asarray(TARGETS))
    return nn.unbox(variables["params"])


@pytest.fixture(scope="module")
def weights(params):
    return attention_weights(CONFIG, params, INPUTS, TARGETS)


def test_shapes_and_dtype(weights):
    assert weights["encoder"].shape == (2, 2, 4, 7, 7)  # [layers, batch, heads, S, S]
    assert weights["decoder"].shape == (3, 2, 4, 5, 5)  # [layers, batch, heads, T, T]
    assert weights["cross"].shape == (3, 2, 4, 5, 7)  # [layers, batch, heads, T, S]
    assert all(w.dtype == np.float32 for w in weights.values())


def test_every_row_sums_to_one(weights):
    for kind, w in weights.items():
        np.testing.assert_allclose(w.sum(axis=-1), 1.0, atol=1e-5, err_msg=kind)
        assert (w >= 0).all(), kind


def test_padding_keys_get_exactly_zero_weight(weights):
    assert (weights["encoder"][:, 1, :, :, 4:] == 0).all()
    assert (weights["cross"][:, 1, :, :, 4:] == 0).all()
    assert (weights["encoder"][:, 1, :, :, :4] > 0).all()  # real keys do get weight


def test_decoder_self_attention_is_causal(weights):
    decoder = weights["decoder"]  # [layers, batch, heads, T, T]
    above_diagonal = np.triu(np.ones((5, 5), bool), k=1)
    assert (decoder[..., above_diagonal] == 0).all()
    assert (decoder[..., ~above_diagonal] > 0).all()
    np.testing.assert_allclose(decoder[..., 0, 0], 1.0)  # the first position sees only itself


def test_packed_examples_never_attend_across_examples(params):
    # one row, two examples packed (source 3 + 4 tokens, target 2 + 3 tokens) and padding
    inputs = np.array([[5, 6, 1, 7, 8, 9, 1, 0]], np.int32)
    inputs_segmentation = np.array([[1, 1, 1, 2, 2, 2, 2, 0]], np.int32)
    inputs_positions = np.array([[0, 1, 2, 0, 1, 2, 3, 0]], np.int32)
    targets = np.array([[11, 1, 12, 13, 1, 0]], np.int32)
    targets_segmentation = np.array([[1, 1, 2, 2, 2, 0]], np.int32)
    targets_positions = np.array([[0, 1, 0, 1, 2, 0]], np.int32)
    weights = attention_weights(
        CONFIG, params, inputs, targets, inputs_segmentation, inputs_positions, targets_segmentation,
        targets_positions,
    )
    same = {
        "encoder": inputs_segmentation[0][:, None] == inputs_segmentation[0][None, :],
        "decoder": targets_segmentation[0][:, None] == targets_segmentation[0][None, :],
        "cross": targets_segmentation[0][:, None] == inputs_segmentation[0][None, :],
    }
    real_queries = {"encoder": inputs_segmentation[0] > 0, "decoder": targets_segmentation[0] > 0,
                    "cross": targets_segmentation[0] > 0}
    for kind, w in weights.items():
        w = w[:, 0]  # [layers, heads, queries, keys]
        assert (w[..., ~same[kind]][..., real_queries[kind][np.nonzero(~same[kind])[0]]] == 0).all(), kind
        np.testing.assert_allclose(w[:, :, real_queries[kind]].sum(-1), 1.0, atol=1e-5, err_msg=kind)
    # the second example's decoder starts afresh: its first position attends only to itself
    np.testing.assert_allclose(weights["decoder"][:, 0, :, 2, 2], 1.0)


def test_scanned_layers_give_the_same_weights(params):
    scanned = CONFIG.replace(scan_layers=True)
    variables = Transformer(scanned).init(jax.random.PRNGKey(1), jnp.asarray(INPUTS), jnp.asarray(TARGETS))
    scanned_params = nn.unbox(variables["params"])
    stacked = attention_weights(scanned, scanned_params, INPUTS, TARGETS)
    looped = attention_weights(CONFIG, unstack_layers(scanned_params), INPUTS, TARGETS)
    for kind in stacked:
        assert stacked[kind].shape == looped[kind].shape, kind
        np.testing.assert_allclose(stacked[kind], looped[kind], atol=1e-5, err_msg=kind)


def test_word_spans_start_at_word_marks_and_keep_specials_apart():
    pieces = ["\u2581The", "\u2581ca", "t", "s", "\u2581sat", ".", "</s>"]
    assert word_spans(pieces) == [(0, 1), (1, 4), (4, 6), (6, 7)]
    assert word_labels(pieces, word_spans(pieces)) == ["The", "cats", "sat.", "</s>"]
    assert word_spans(["ab", "\u2581c"]) == [(0, 1), (1, 2)]  # the first piece always starts a word


def test_merging_words_averages_rows_and_sums_columns():
    rng = np.random.default_rng(0)
    source = ["\u2581a", "b", "\u2581c", "</s>"]  # words: ab | c | </s>
    target = ["\u2581x", "\u2581y", "z", "</s>"]  # words: x | yz | </s>

    def softmax(shape, causal=False):
        logits = rng.normal(size=shape)
        if causal:
            logits = np.where(np.tril(np.ones(shape[-2:], bool)), logits, -np.inf)
        return (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)

    maps = AttentionMaps(source, target, softmax((2, 3, 4, 4)), softmax((2, 3, 4, 4), causal=True),
                         softmax((2, 3, 4, 4)))
    merged = merge_words(maps)
    assert merged.source_tokens == ["ab", "c", "</s>"] and merged.target_tokens == ["x", "yz", "</s>"]
    assert merged.cross.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(merged.cross[1, 2, 1, 0], maps.cross[1, 2, 1:3, 0:2].sum(-1).mean(), rtol=1e-6)
    for kind in ("encoder", "decoder", "cross"):
        np.testing.assert_allclose(merged.weights(kind).sum(-1), 1.0, atol=1e-5, err_msg=kind)
    above_diagonal = np.triu(np.ones((3, 3), bool), k=1)
    assert (merged.decoder[..., above_diagonal] == 0).all()  # causality survives merging


def test_capture_and_maps_import_neither_tensorflow_nor_matplotlib():
    assert modules_loaded("t2t_jax.model, t2t_jax.visualize", "m in ('tensorflow', 'matplotlib')") == []
