"""One device mesh, one table of logical-axis rules, and the train state created already sharded.

Mesh axes: 'data' (batch), 'fsdp' (batch, and parameters split along 'embed'), 'tensor' (heads, mlp and
vocab split, Megatron style). `config.mesh.{data,fsdp,tensor}` give their sizes; -1 takes the rest.
The model names every parameter axis (embed, mlp, heads, kv, vocab, length, layers); LOGICAL_RULES maps
those names to mesh axes, so changing the parallelism never touches the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import linen as nn
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from t2t_jax.errors import UserError

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")
LOGICAL_RULES = (
    ("batch", BATCH_AXES),
    ("embed", "fsdp"),
    ("act_embed", None),  # d_model of activations (the residual stream): whole on each device
    ("vocab", "tensor"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("length", None),
    ("layers", None),
)


def mesh_shape(mesh_config: Any, device_count: int) -> tuple[int, int, int]:
    """(data, fsdp, tensor) sizes; one of them may be -1 (all remaining devices)."""
    sizes = [int(getattr(mesh_config, axis)) for axis in MESH_AXES]
    if sizes.count(-1) > 1:
        raise UserError(f"mesh: at most one of data/fsdp/tensor may be -1, got {dict(zip(MESH_AXES, sizes))}")
    known = math.prod(size for size in sizes if size != -1)
    if -1 in sizes:
        if device_count % known:
            raise UserError(f"mesh {dict(zip(MESH_AXES, sizes))} does not divide {device_count} devices")
        sizes[sizes.index(-1)] = device_count // known
    if math.prod(sizes) != device_count:
        raise UserError(
            f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, but {device_count} are visible"
        )
    return tuple(sizes)  # type: ignore[return-value]


def make_mesh(mesh_config: Any, devices: list[jax.Device] | None = None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    shape = mesh_shape(mesh_config, len(devices))
    auto = (AxisType.Auto,) * len(MESH_AXES)  # XLA's partitioner places the activations (pjit style)
    if devices == jax.devices():
        return jax.make_mesh(shape, MESH_AXES, axis_types=auto)
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=auto)


def present_mesh(mesh_config: Any, devices: list[jax.Device] | None = None) -> Mesh:
    """The devices present (default: all processes') as the config's mesh, or, where that does not fit them (a
    model trained with mesh.fsdp=8, restored on a laptop), all on the data axis. Checkpoints restore onto any."""
    try:
        return make_mesh(mesh_config, devices)
    except UserError:
        return make_mesh(ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1)), devices)


def decoding_mesh(mesh_config: Any) -> Mesh:
    """This host's devices as a mesh: decoding (t2t-jax decode, eval, Translator) runs on each host by itself,
    with a full copy of the parameters (multi-host decoding gives each host a share of the lines)."""
    return present_mesh(mesh_config, jax.local_devices())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batches are split over the data and fsdp axes, replicated over tensor."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def batch_parallelism(mesh: Mesh) -> int:
    return mesh.shape["data"] * mesh.shape["fsdp"]


def logical_shardings(boxed_tree: Any, mesh: Mesh) -> Any:
    """NamedShardings for a tree whose leaves may carry logical axis names (nn.LogicallyPartitioned).

    A dimension whose size the mesh axes do not divide (a 14-symbol vocabulary over 8 tensor shards, say)
    is replicated instead of split.
    """
    is_spec = lambda x: isinstance(x, PartitionSpec)  # noqa: E731
    logical = nn.get_partition_spec(boxed_tree)
    shapes = jax.tree_util.tree_map(lambda leaf: leaf.shape, nn.unbox(boxed_tree))
    return jax.tree_util.tree_map(
        lambda spec, shape: NamedSharding(mesh, _divisible(nn.logical_to_mesh_axes(spec, LOGICAL_RULES), shape, mesh)),
        logical, shapes, is_leaf=is_spec,
    )


def _divisible(spec: PartitionSpec, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    axes = []
    for size, names in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        group = (names,) if isinstance(names, str) else tuple(names or ())
        axes.append(names if size % math.prod(mesh.shape[name] for name in group) == 0 else None)
    return PartitionSpec(*axes)


def under_rules(function: Callable[..., Any], mesh: Mesh) -> Callable[..., Any]:
    """`function`, traced with `mesh` and LOGICAL_RULES in force, so that the model's activation constraints
    (t2t_jax.model.layers.constrain) apply. Jit the result."""

    def traced(*args: Any, **kwargs: Any) -> Any:
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), nn.logical_axis_rules(LOGICAL_RULES):
            return function(*args, **kwargs)

    return traced


def sharded_init(init_fn: Callable[[], Any], mesh: Mesh) -> tuple[Any, Any]:
    """Runs `init_fn` (which returns a tree of boxed values) so that every output is created directly with
    its sharding, never materialized whole on one device. Returns (unboxed tree, its shardings)."""
    abstract = jax.eval_shape(init_fn)
    shardings = logical_shardings(abstract, mesh)
    unboxed = jax.jit(lambda: nn.unbox(init_fn()), out_shardings=shardings)()
    return unboxed, shardings


def abstract_state(init_fn: Callable[[], Any], mesh: Mesh) -> Any:
    """ShapeDtypeStructs with shardings for the tree `init_fn` would create: a restore target."""
    abstract = jax.eval_shape(init_fn)
    shardings = logical_shardings(abstract, mesh)
    return jax.tree_util.tree_map(
        lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
        nn.unbox(abstract), shardings,
    )


def global_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """This host's part of a batch -> global arrays split over the batch axes of the mesh."""
    return {name: jax.make_array_from_process_local_data(sharding, value) for name, value in batch.items()}
