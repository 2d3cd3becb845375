"""The Transformer: logits, causality, padding and packing invariance, dropout, dtypes, sharding names, scan/remat."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import VOCAB, abstract_params, init_params, random_tokens, small_config
from flax import linen as nn

from t2t_jax.model import Transformer, TransformerLM, shift_right, sinusoidal_encoding
from t2t_jax.model.inference import unstack_layers

# Speed: this tiny model runs op by op (eager), which is much faster than compiling it, as long as array shapes
# repeat (each new shape compiles every op again). So the tests reuse [2, 6] sources / [2, 5] targets (and
# [1, 6] / [1, 5]) wherever they can, and jit only nn.scan models and gradients.


@functools.cache
def apply_fn(config):
    """Logits of a Transformer(config). Not jitted (for this tiny model op-by-op dispatch is much faster than
    compiling), except with scan_layers, where eager nn.scan would recompile on every call."""
    model = Transformer(config)

    def apply(params, inputs, targets, inputs_segmentation=None, inputs_positions=None, targets_segmentation=None,
              targets_positions=None):
        return model.apply(
            {"params": params}, inputs, targets, inputs_segmentation=inputs_segmentation,
            inputs_positions=inputs_positions, targets_segmentation=targets_segmentation,
            targets_positions=targets_positions,
        )

    return jax.jit(apply) if config.scan_layers else apply


NORMS = ["post", "pre"]


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_logits_are_float32_with_expected_shape(norm, positions):
    config = small_config(norm_placement=norm, position_encoding=positions)
    inputs, targets = random_tokens(0, (2, 6)), random_tokens(1, (2, 5))
    logits = apply_fn(config)(init_params(config), inputs, targets)
    assert logits.dtype == jnp.float32
    assert logits.shape == (2, 5, VOCAB)
    assert np.all(np.isfinite(logits))
    assert float(jnp.std(logits)) > 1e-3  # not degenerate


def test_encode_then_decode_equals_call():
    config = small_config()
    params = init_params(config)
    model = Transformer(config)
    inputs, targets = random_tokens(2, (2, 6)), random_tokens(3, (2, 5))
    encoded = model.apply({"params": params}, inputs, method=Transformer.encode)
    assert encoded.shape == (2, 6, config.d_model)
    logits = model.apply({"params": params}, encoded, inputs, targets, method=Transformer.decode)
    np.testing.assert_allclose(logits, model.apply({"params": params}, inputs, targets), atol=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_decoder_is_causal(norm):
    config = small_config(norm_placement=norm)
    params, apply = init_params(config), apply_fn(config)
    inputs, targets = random_tokens(4, (2, 6)), random_tokens(5, (2, 5))
    reference = np.asarray(apply(params, inputs, targets))
    for position in range(targets.shape[1]):
        changed = targets.at[:, position].set((targets[:, position] + 1 - 2) % (VOCAB - 2) + 2)
        logits = np.asarray(apply(params, inputs, changed))
        # target t is the decoder input at t + 1: logits up to t must not see it
        np.testing.assert_array_equal(logits[:, : position + 1], reference[:, : position + 1])
        if position + 1 < targets.shape[1]:
            assert np.abs(logits[:, position + 1] - reference[:, position + 1]).max() > 1e-4


@pytest.mark.parametrize("norm", NORMS)
def test_source_padding_does_not_change_logits(norm):
    config = small_config(norm_placement=norm)
    params, apply = init_params(config), apply_fn(config)
    inputs = np.array(random_tokens(6, (2, 6)))
    inputs[1, 3:] = 0  # the second source is shorter
    targets = random_tokens(7, (2, 5))
    reference = apply(params, jnp.asarray(inputs), targets)
    padded = jnp.pad(jnp.asarray(inputs), ((0, 0), (0, 4)))
    assert np.abs(apply(params, padded, targets) - reference).max() <= 1e-5
    # (test_decoding_cache.py also decodes an unpadded sentence alone and inside a padded batch)
    # while a change inside the source does change them
    changed = apply(params, jnp.asarray(inputs).at[:, 0].add(1), targets)
    assert np.abs(changed - reference).max() > 1e-3


def test_shift_right_starts_every_packed_example_afresh():
    targets = jnp.array([[5, 6, 7, 8, 9, 4, 0], [3, 4, 5, 6, 7, 8, 9]])
    np.testing.assert_array_equal(shift_right(targets), [[0, 5, 6, 7, 8, 9, 4], [0, 3, 4, 5, 6, 7, 8]])
    segmentation = jnp.array([[1, 1, 1, 2, 2, 3, 0], [1, 1, 1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(
        shift_right(targets, segmentation), [[0, 5, 6, 0, 8, 0, 0], [0, 3, 4, 5, 6, 7, 8]]
    )


def pack(examples, length):
    """Pack a list of token lists into one row: (tokens, segmentation, positions), each [1, length]."""
    tokens, segmentation, positions = np.zeros((3, 1, length), np.int32)
    start = 0
    for number, example in enumerate(examples, start=1):
        end = start + len(example)
        tokens[0, start:end] = example
        segmentation[0, start:end] = number
        positions[0, start:end] = np.arange(len(example))
        start = end
    return jnp.asarray(tokens), jnp.asarray(segmentation), jnp.asarray(positions)


@pytest.mark.parametrize("norm, positions", [("post", "sinusoidal"), ("pre", "learned")])
def test_packed_batch_equals_examples_run_one_by_one(norm, positions):
    config = small_config(norm_placement=norm, position_encoding=positions)
    params, apply = init_params(config), apply_fn(config)
    rng = np.random.default_rng(8)
    # two examples (and trailing padding) in one row of 6 source / 5 target tokens
    sources = [rng.integers(2, VOCAB, n).tolist() for n in (3, 2)]
    targets = [rng.integers(2, VOCAB, n).tolist() for n in (2, 2)]
    inputs, inputs_segmentation, inputs_positions = pack(sources, 6)
    packed_targets, targets_segmentation, targets_positions = pack(targets, 5)
    packed = apply(
        params, inputs, packed_targets, inputs_segmentation=inputs_segmentation, inputs_positions=inputs_positions,
        targets_segmentation=targets_segmentation, targets_positions=targets_positions,
    )
    start = 0
    for source, target in zip(sources, targets, strict=True):
        # each example on its own, in a row of the same size (padding is ignored: see the padding test)
        alone = apply(params, pack([source], 6)[0], pack([target], 5)[0])[:, : len(target)]
        segment = packed[:, start:start + len(target)]
        assert np.abs(segment - alone).max() <= 1e-4, f"example at {start} differs when packed"
        start += len(target)


def test_packing_without_segmentation_would_differ():
    """Sanity check of the packing test itself: dropping the segment ids lets examples see each other."""
    config = small_config()
    params, apply = init_params(config), apply_fn(config)
    inputs, inputs_segmentation, inputs_positions = pack([[3, 4, 5], [6, 7]], 6)
    targets, targets_segmentation, targets_positions = pack([[8, 9], [10, 11, 12]], 5)
    with_segments = apply(params, inputs, targets, inputs_segmentation, inputs_positions, targets_segmentation,
                          targets_positions)
    without = apply(params, inputs, targets, None, inputs_positions, None, targets_positions)
    assert np.abs(with_segments[:, 2:5] - without[:, 2:5]).max() > 1e-3


def dropout_key(seed):
    """A typed 'rbg' key: the model treats it like any key, and its dropout masks compile in a fraction of the
    time of threefry's on CPU (about 2 s instead of 10 s for this model)."""
    return jax.random.key(seed, impl="rbg")


def test_dropout_only_with_a_dropout_rng():
    config = small_config(dropout_rate=0.3, attention_dropout_rate=0.1, relu_dropout_rate=0.1)
    variables = {"params": init_params(config)}
    model = Transformer(config)
    inputs, targets = random_tokens(9, (2, 6)), random_tokens(10, (2, 5))
    plain = model.apply(variables, inputs, targets)
    np.testing.assert_array_equal(plain, model.apply(variables, inputs, targets, deterministic=True))
    with_rng = lambda key: model.apply(variables, inputs, targets, rngs={"dropout": key})
    key = dropout_key(1)
    dropped = with_rng(key)
    assert np.abs(dropped - plain).max() > 1e-3
    np.testing.assert_array_equal(dropped, with_rng(key))
    assert np.abs(with_rng(dropout_key(2)) - dropped).max() > 1e-3
    # deterministic=True wins over a dropout rng
    overridden = model.apply(variables, inputs, targets, deterministic=True, rngs={"dropout": key})
    np.testing.assert_array_equal(plain, overridden)


@pytest.mark.parametrize("rate", ["attention_dropout_rate", "relu_dropout_rate"])
def test_t2t_extra_dropouts_are_applied(rate):
    config = small_config(dropout_rate=0.0, **{rate: 0.5})
    params = init_params(config)
    apply = Transformer(config).apply
    inputs, targets = random_tokens(11, (2, 6)), random_tokens(12, (2, 5))
    plain = apply({"params": params}, inputs, targets)
    dropped = apply({"params": params}, inputs, targets, rngs={"dropout": dropout_key(0)})
    assert np.abs(dropped - plain).max() > 1e-3


@pytest.mark.parametrize("sharing", ["all", "none"])
def test_bfloat16_compute_returns_float32_logits(sharing):
    config = small_config(share_embeddings=sharing)
    low = config.replace(dtype=jnp.bfloat16)
    params = init_params(config)
    inputs, targets = random_tokens(13, (2, 6)), random_tokens(14, (2, 5))
    logits = apply_fn(low)(params, inputs, targets)
    assert logits.dtype == jnp.float32
    assert logits.shape == (2, 5, VOCAB)
    reference = apply_fn(config)(params, inputs, targets)
    assert np.abs(logits - reference).max() < 0.25 * float(np.abs(reference).max())
    # parameters stay float32 (param_dtype), whatever the compute dtype
    low_params = abstract_params(low)
    dtypes = {leaf.dtype for leaf in jax.tree_util.tree_leaves(nn.unbox(low_params))}
    assert dtypes == {jnp.dtype(jnp.float32)}


def partition_leaves(params):
    specs = nn.get_partition_spec(params)
    is_spec = lambda leaf: isinstance(leaf, jax.sharding.PartitionSpec)
    flat_specs = jax.tree_util.tree_flatten_with_path(specs, is_leaf=is_spec)[0]
    shapes = jax.tree_util.tree_leaves(nn.unbox(params))
    return [(jax.tree_util.keystr(path), spec, leaf.shape)
            for (path, spec), leaf in zip(flat_specs, shapes, strict=True)]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"share_embeddings": "none", "position_encoding": "learned", "target_vocab_size": 31},
        {"norm_placement": "pre", "scan_layers": True},
    ],
    ids=["default", "unshared-learned", "pre-scan"],
)
def test_every_parameter_has_logical_axis_names(overrides):
    config = small_config(**overrides)
    leaves = partition_leaves(abstract_params(config))
    assert len(leaves) > 10
    for path, spec, shape in leaves:
        assert isinstance(spec, jax.sharding.PartitionSpec), path
        assert len(spec) == len(shape), f"{path}: {spec} for shape {shape}"
        assert all(isinstance(name, str) for name in spec), f"{path}: {spec}"
        if config.scan_layers and "layers" in path:
            assert spec[0] == "layers", f"{path}: {spec}"
    names = {name for _, spec, _ in leaves for name in spec}
    assert {"vocab", "embed", "heads", "kv", "mlp"} <= names


# one config for every scan / remat test, so that the (jitted) scanned parameters and logits are computed once
SCAN_CONFIG = small_config(norm_placement="pre", scan_layers=True)


def test_scan_layers_equals_loop_after_unstack():
    scanned = init_params(SCAN_CONFIG)
    unstacked = unstack_layers(nn.unbox(scanned))
    loop_config = SCAN_CONFIG.replace(scan_layers=False)
    # the unstacked tree has exactly the loop model's structure and shapes
    loop_shapes = jax.tree_util.tree_map(jnp.shape, nn.unbox(init_params(loop_config)))
    assert jax.tree_util.tree_map(jnp.shape, unstacked) == loop_shapes
    inputs, targets = random_tokens(15, (2, 6)), random_tokens(16, (2, 5))
    from_scan = apply_fn(SCAN_CONFIG)(scanned, inputs, targets)
    from_loop = apply_fn(loop_config)(unstacked, inputs, targets)
    assert np.abs(from_scan - from_loop).max() <= 1e-5
    # and layer i of the scan is loop layer i (not, say, reversed): layers differ, so a mix-up would show
    layers = unstacked["decoder"]
    assert np.abs(layers["layers_0"]["feed_forward"]["wi"]["kernel"]
                  - layers["layers_1"]["feed_forward"]["wi"]["kernel"]).max() > 1e-3


def test_unstack_layers_accepts_params_as_returned_by_init():
    """`init` returns boxed (logically partitioned) params; unstack_layers should take them as they come."""
    scanned = init_params(SCAN_CONFIG)  # boxed, as Transformer.init returns them
    unstacked = unstack_layers(scanned)
    inputs, targets = random_tokens(15, (2, 6)), random_tokens(16, (2, 5))
    from_scan = apply_fn(SCAN_CONFIG)(scanned, inputs, targets)
    from_loop = apply_fn(SCAN_CONFIG.replace(scan_layers=False))(unstacked, inputs, targets)
    assert np.abs(from_loop - from_scan).max() <= 1e-5


@pytest.mark.parametrize("remat", ["full", "dots"])
def test_remat_variants_give_identical_logits(remat):
    config = small_config()
    params = init_params(config)
    inputs, targets = random_tokens(19, (2, 6)), random_tokens(20, (2, 5))
    reference = apply_fn(config)(params, inputs, targets)
    logits = apply_fn(config.replace(remat=remat))(params, inputs, targets)
    assert np.abs(logits - reference).max() <= 1e-5


def test_remat_scan_model_has_the_loop_models_gradients():
    """Training's configuration (scan_layers + remat 'dots') against the plain loop model with the same (unstacked)
    parameters: same loss, logits and gradients."""
    params = nn.unbox(init_params(SCAN_CONFIG))
    inputs, targets = random_tokens(19, (2, 6)), random_tokens(20, (2, 5))

    def loss_and_gradients(config, params):
        model = Transformer(config)

        def loss(p):
            logits = model.apply({"params": p}, inputs, targets)
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], axis=-1)), logits

        return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)

    (value, logits), grads = loss_and_gradients(SCAN_CONFIG.replace(remat="dots"), params)
    (reference_value, reference_logits), reference_grads = loss_and_gradients(
        SCAN_CONFIG.replace(scan_layers=False), unstack_layers(params)
    )
    assert np.abs(logits - reference_logits).max() <= 1e-5
    np.testing.assert_allclose(value, reference_value, rtol=1e-5)
    flat_grads = jax.tree_util.tree_flatten_with_path(unstack_layers(grads))[0]
    flat_reference = jax.tree_util.tree_flatten_with_path(reference_grads)[0]
    assert [path for path, _ in flat_grads] == [path for path, _ in flat_reference]
    for (path, grad), (_, reference) in zip(flat_grads, flat_reference, strict=True):
        np.testing.assert_allclose(grad, reference, atol=1e-5, rtol=1e-4, err_msg=jax.tree_util.keystr(path))


def test_attention_weights_rows_sum_to_one_and_ignore_padding():
    config = small_config()
    params = init_params(config)
    inputs = random_tokens(21, (2, 6)).at[1, 4:].set(0)
    targets = random_tokens(22, (2, 5))
    _, state = Transformer(config).apply({"params": params}, inputs, targets, mutable=["intermediates"])
    flat = jax.tree_util.tree_flatten_with_path(state["intermediates"])[0]
    weights = {jax.tree_util.keystr(path): leaf for path, leaf in flat}
    assert len(weights) == 2 + 2 * 2  # encoder self, decoder self and cross, per layer
    causal_checked = 0
    for path, value in weights.items():
        assert value.dtype == jnp.float32
        np.testing.assert_allclose(value.sum(-1), 1.0, atol=1e-5, err_msg=path)
        if "cross_attention" in path or "encoder" in path:
            assert float(jnp.abs(value[1, ..., 4:]).max()) == 0.0, path  # padded source keys get zero weight
        if "decoder" in path and "'self_attention'" in path:
            upper = jnp.triu(jnp.ones((5, 5), bool), k=1)  # future positions
            assert float(jnp.abs(jnp.where(upper, value, 0)).max()) == 0.0, path
            causal_checked += 1
    assert causal_checked == 2


def test_sinusoidal_encoding_matches_paper_formula():
    d_model = 16
    encoding = np.asarray(sinusoidal_encoding(jnp.arange(10)[None], d_model))[0]
    positions = np.arange(10)[:, None]
    i = np.arange(d_model // 2)[None]
    np.testing.assert_allclose(encoding[:, 0::2], np.sin(positions / 10000 ** (2 * i / d_model)), atol=1e-5)
    np.testing.assert_allclose(encoding[:, 1::2], np.cos(positions / 10000 ** (2 * i / d_model)), atol=1e-5)


@pytest.mark.parametrize("norm", NORMS)
def test_transformer_lm_shape_and_causality(norm):
    config = small_config(norm_placement=norm)
    model = TransformerLM(config)
    targets = random_tokens(23, (2, 5))
    variables = model.init(jax.random.PRNGKey(0), targets)
    assert "encoder" not in variables["params"]
    assert not any("cross_attention" in jax.tree_util.keystr(path)
                   for path, _ in jax.tree_util.tree_flatten_with_path(variables["params"])[0])
    reference = np.asarray(model.apply(variables, targets))
    assert reference.dtype == np.float32 and reference.shape == (2, 5, VOCAB)
    for position in range(targets.shape[1]):
        changed = targets.at[:, position].set((targets[:, position] - 2 + 1) % (VOCAB - 2) + 2)
        logits = np.asarray(model.apply(variables, changed))
        np.testing.assert_array_equal(logits[:, : position + 1], reference[:, : position + 1])
        if position + 1 < targets.shape[1]:
            assert np.abs(logits[:, position + 1] - reference[:, position + 1]).max() > 1e-4


def test_fast_dropout_drops_at_its_rounded_rate_and_keeps_the_expectation():
    from t2t_jax.model.layers import Dropout

    inputs = jnp.ones((64, 1000))
    out = Dropout(0.1).apply({}, inputs, False, rngs={"dropout": jax.random.PRNGKey(3)})
    dropped = float(jnp.mean(out == 0))
    assert abs(dropped - 26 / 256) < 0.005, dropped  # 0.1 rounds to 26/256
    assert abs(float(jnp.mean(out)) - 1.0) < 0.01  # inverted dropout keeps the mean
    other = Dropout(0.1).apply({}, inputs, False, rngs={"dropout": jax.random.PRNGKey(4)})
    assert not bool(jnp.all((out == 0) == (other == 0)))  # masks follow the key
    assert bool(jnp.all(Dropout(0.1).apply({}, inputs, True) == inputs))
