"""model.attention_implementation=dot_product (jax.nn.dot_product_attention: cuDNN's fused attention on GPUs, XLA's
here) computes what the plain formula does: logits and gradients of the whole model, packed batches included, and
beam search; combinations it cannot compute are one clear error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import init_params, random_tokens, small_config
from flax import linen as nn

from t2t_jax.model import Transformer
from t2t_jax.translate import BeamDecoder


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_logits_and_gradients_equal_the_plain_formula(norm):
    plain = small_config(norm_placement=norm, dropout_rate=0.0)
    fused = plain.replace(attention_implementation="dot_product")
    params = nn.unbox(init_params(plain))
    inputs, targets = random_tokens(0, (2, 6)), random_tokens(1, (2, 5))
    inputs = inputs.at[1, 4:].set(0)  # padding
    segments = {"inputs_segmentation": jnp.asarray([[1, 1, 1, 2, 2, 2], [1, 1, 1, 1, 0, 0]]),
                "targets_segmentation": jnp.asarray([[1, 1, 2, 2, 2], [1, 1, 1, 1, 1]])}  # packed rows

    def loss(config, params):
        logits = Transformer(config).apply({"params": params}, inputs, targets, **segments)
        return jnp.sum(jax.nn.log_softmax(logits)[..., 3]), logits

    (plain_loss, plain_logits), plain_grads = jax.value_and_grad(loss, argnums=1, has_aux=True)(plain, params)
    (fused_loss, fused_logits), fused_grads = jax.value_and_grad(loss, argnums=1, has_aux=True)(fused, params)
    np.testing.assert_allclose(fused_logits, plain_logits, atol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(fused_grads), jax.tree_util.tree_leaves(plain_grads)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_beam_search_translates_as_with_the_plain_formula():
    plain = small_config()
    params = nn.unbox(init_params(plain))
    inputs = np.array(random_tokens(2, (3, 6)))
    inputs[2, 3:] = 0
    ours = BeamDecoder(plain.replace(attention_implementation="dot_product"), 3, 0.6, 4)(params, inputs)
    theirs = BeamDecoder(plain, 3, 0.6, 4)(params, inputs)
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_allclose(ours[1], theirs[1], atol=1e-4)


@pytest.mark.parametrize("changes", [dict(position_encoding="relative"), dict(attention_chunk=4),
                                     dict(attention_dropout_rate=0.1), dict(attention_implementation="flash")])
def test_what_it_cannot_compute_is_one_clear_error(changes):
    with pytest.raises(ValueError, match="attention_implementation"):
        small_config(**{"attention_implementation": "dot_product", **changes})
