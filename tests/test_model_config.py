"""TransformerConfig: the paper's presets (Table 3), validation, parameter counts and embedding sharing."""

import dataclasses

import conftest
import jax
import numpy as np
import pytest
from flax import linen as nn

from t2t_jax.model import TransformerConfig

PAPER_VOCAB = 37000  # the shared BPE vocabulary of the paper's EN-DE runs


def abstract_params(config):
    """Parameter shapes only (jax.eval_shape: no real initialization), unboxed."""
    return nn.unbox(conftest.abstract_params(config, source_length=7))


def count(params):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params))


def embedding_matrices(params):
    """{path: shape} of every token embedding table and of the separate output projection, if any."""
    flat = {"/".join(map(str, path)): tuple(leaf.shape) for path, leaf in _flatten(params)}
    return {
        path: shape for path, shape in flat.items()
        if (path.endswith("embedding") and "position_encoding" not in path) or path.endswith("logits/kernel")
    }


def _flatten(params, prefix=()):
    for key, value in params.items():
        if isinstance(value, dict):
            yield from _flatten(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def test_base_preset_matches_paper_table_3():
    config = TransformerConfig.base(vocab_size=PAPER_VOCAB)
    assert (config.d_model, config.d_ff, config.num_heads) == (512, 2048, 8)
    assert (config.num_encoder_layers, config.num_decoder_layers) == (6, 6)
    assert config.dropout_rate == pytest.approx(0.1)
    assert config.key_size == config.value_size == 64  # d_k = d_v = d_model / h
    assert config.vocab_size == config.output_vocab_size == PAPER_VOCAB
    assert config.norm_placement == "post" and config.position_encoding == "sinusoidal"
    assert config.share_embeddings == "all" and config.scale_embeddings


def test_big_preset_matches_paper_table_3():
    config = TransformerConfig.big(vocab_size=PAPER_VOCAB)
    assert (config.d_model, config.d_ff, config.num_heads) == (1024, 4096, 16)
    assert (config.num_encoder_layers, config.num_decoder_layers) == (6, 6)
    assert config.dropout_rate == pytest.approx(0.3)
    assert config.key_size == config.value_size == 64


def test_presets_take_overrides_and_replace_makes_variants():
    big = TransformerConfig.big(vocab_size=100, dropout_rate=0.1, num_heads=8)
    assert big.dropout_rate == pytest.approx(0.1) and big.num_heads == 8 and big.d_model == 1024
    tiny = TransformerConfig.tiny(vocab_size=100)
    assert tiny.d_model < 512 and tiny.num_encoder_layers < 6
    decode = tiny.replace(decode=True)
    assert decode.decode and not tiny.decode and decode.d_model == tiny.d_model
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiny.d_model = 64


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(target_vocab_size=200), "share_embeddings"),
        (dict(norm_placement="middle"), "norm_placement"),
        (dict(d_model=100, num_heads=8), "divisible"),
        (dict(share_embeddings="some"), "share_embeddings"),
        (dict(position_encoding="rotary"), "position_encoding"),
        (dict(remat="sometimes"), "remat"),
        (dict(d_model=15, num_heads=5), "even"),
    ],
)
def test_invalid_combinations_raise_value_error(changes, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig.tiny(vocab_size=100, **changes)
    with pytest.raises(ValueError, match=message):  # also through .replace()
        TransformerConfig.tiny(vocab_size=100).replace(**changes)


def test_valid_unusual_combinations_are_accepted():
    # an unshared target vocabulary is fine when the embeddings are not all shared
    config = TransformerConfig.tiny(vocab_size=100, target_vocab_size=200, share_embeddings="target")
    assert config.output_vocab_size == 200
    # explicit per-head sizes lift the divisibility requirement
    config = TransformerConfig.tiny(vocab_size=100, d_model=100, num_heads=8, d_k=16, d_v=12)
    assert (config.key_size, config.value_size) == (16, 12)


def test_base_parameter_count_at_paper_vocabulary():
    params = abstract_params(TransformerConfig.base(vocab_size=PAPER_VOCAB))
    total = count(params)
    assert 60e6 <= total <= 67e6, f"Transformer base has {total:,} parameters (paper: 65M)"


def test_big_parameter_count_at_paper_vocabulary():
    params = abstract_params(TransformerConfig.big(vocab_size=PAPER_VOCAB))
    total = count(params)
    assert 205e6 <= total <= 220e6, f"Transformer big has {total:,} parameters (paper: 213M)"


def test_base_parameter_count_is_exact():
    """Exact count from the architecture: no biases in attention, biases in the FFN, 2 or 3 LayerNorms per layer."""
    d, ff, vocab = 512, 2048, PAPER_VOCAB
    layer_norm = 2 * d
    attention = 4 * d * d
    ffn = d * ff + ff + ff * d + d
    expected = vocab * d + 6 * (attention + ffn + 2 * layer_norm) + 6 * (2 * attention + ffn + 3 * layer_norm)
    total = count(abstract_params(TransformerConfig.base(vocab_size=PAPER_VOCAB)))
    assert total == expected, f"measured {total:,}, expected {expected:,}"


@pytest.mark.parametrize(
    "sharing, target_vocab, expected",
    [
        # encoder input = decoder input = output projection
        ("all", None, {"shared_embedding/embedding": 200}),
        # source embedding + (decoder input = output projection)
        ("target", None, {"source_embedding/embedding": 200, "target_embedding/embedding": 200}),
        ("target", 300, {"source_embedding/embedding": 200, "target_embedding/embedding": 300}),
        # three separate matrices
        ("none", 300,
         {"source_embedding/embedding": 200, "target_embedding/embedding": 300, "decoder/logits/kernel": 300}),
    ],
)
def test_share_embeddings_gives_expected_number_of_matrices(sharing, target_vocab, expected):
    config = TransformerConfig.tiny(
        vocab_size=200, target_vocab_size=target_vocab, share_embeddings=sharing, d_model=32, d_ff=64
    )
    params = abstract_params(config)
    matrices = embedding_matrices(params)
    vocab_sizes = {path: shape[1] if path.endswith("logits/kernel") else shape[0]
                   for path, shape in matrices.items()}
    assert vocab_sizes == expected
    for path, shape in matrices.items():
        assert 32 in shape, (path, shape)
    # each level of sharing removes exactly one [vocab, d_model] matrix
    unshared = count(abstract_params(config.replace(share_embeddings="none")))
    saved = (3 - len(expected)) * config.output_vocab_size * config.d_model
    assert count(params) == unshared - saved
