"""Chunked attention (model.attention_chunk): the same outputs and gradients as whole attention, with masks of
every kind, and the config rules that go with it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t2t_jax.model import Transformer, TransformerConfig
from t2t_jax.model.attention import attention_mask, chunked_attention


def _whole(query, key, value, mask):
    logits = jnp.einsum("bhqd,bhkd->bhqk", query, key)
    weights = jax.nn.softmax(jnp.where(mask, logits, -1e10), axis=-1)
    return jnp.einsum("bhqk,bhkd->bhqd", weights, value)


@pytest.mark.parametrize("kind", ["padding", "causal", "segments"])
@pytest.mark.parametrize("chunk", [4, 5, 16])  # divides the 20 queries, does not, covers them
def test_chunks_give_the_whole_attention_and_its_gradients(kind, chunk):
    rng = np.random.default_rng(0)
    query, key, value = (jnp.asarray(rng.normal(size=(2, 3, 20, 8)), jnp.float32) for _ in range(3))
    valid = jnp.asarray(np.arange(20)[None] < np.array([[20], [13]]))
    segments = jnp.asarray(np.where(np.arange(20) < 9, 1, 2)[None].repeat(2, 0))
    mask = {"padding": attention_mask(valid), "causal": attention_mask(valid, causal=True),
            "segments": attention_mask(valid, segments, segments)}[kind]
    np.testing.assert_allclose(chunked_attention(query, key, value, mask, chunk), _whole(query, key, value, mask),
                               rtol=1e-5, atol=1e-6)
    loss = lambda f: lambda q, k, v: jnp.sum(jnp.sin(f(q, k, v)))  # noqa: E731
    chunked = jax.grad(loss(lambda q, k, v: chunked_attention(q, k, v, mask, chunk)), argnums=(0, 1, 2))
    whole = jax.grad(loss(lambda q, k, v: _whole(q, k, v, mask)), argnums=(0, 1, 2))
    for got, want in zip(chunked(query, key, value), whole(query, key, value)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_model_with_chunked_attention_computes_what_the_whole_one_does():
    config = TransformerConfig.tiny(vocab_size=32, num_heads=2, d_model=32, d_ff=64, dropout_rate=0.0)
    inputs = jnp.asarray(np.random.default_rng(1).integers(1, 32, (2, 24)), jnp.int32)
    targets = jnp.asarray(np.random.default_rng(2).integers(1, 32, (2, 19)), jnp.int32)
    params = Transformer(config).init(jax.random.PRNGKey(0), inputs, targets)
    whole = Transformer(config).apply(params, inputs, targets)
    chunked = Transformer(config.replace(attention_chunk=8)).apply(params, inputs, targets)
    np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-4)


def test_chunks_and_attention_dropout_do_not_mix():
    with pytest.raises(ValueError, match="attention_chunk needs attention_dropout_rate 0"):
        TransformerConfig.tiny(vocab_size=32, attention_chunk=64, attention_dropout_rate=0.1)
    with pytest.raises(ValueError, match="attention_chunk must be"):
        TransformerConfig.tiny(vocab_size=32, attention_chunk=-1)
