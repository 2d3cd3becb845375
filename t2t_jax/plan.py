"""t2t-jax plan: the real sharded train step (and beam search) compiled ahead of time for a TPU topology, on this
CPU machine.

jax.experimental.topologies describes a TPU slice without its hardware (libtpu, `pip install -e '.[tpu]'`, compiles
for it); the train state and batch are given as abstract arrays with the shardings the rules give them on that
slice's mesh, and XLA's compiled program reports its memory per chip and FLOPs. The decoding programs (encoder +
cache, then the whole beam search loop) are compiled the same way, for decode.batch_tokens of sources of
data.max_source_length per chip: a decoding batch that does not fit is found too. `cpu` compiles for this
machine's devices instead. GPUs cannot be compiled for without one (XLA:GPU needs the device); see
benchmarks/README.md's measured memory for them.

    t2t-jax plan --config configs/big.py --target v5e-16 [--json FILE] [--config.KEY=VALUE ...]
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from t2t_jax.errors import UserError

GIB = 1024**3
HEADROOM = 0.9  # a plan fits when its peak is at most this share of a chip's memory
MEASURED_MFU = 0.406  # base on an H200 (benchmarks/README.md): the step-time estimates assume it


@dataclasses.dataclass(frozen=True)
class Target:
    topology: str  # jax.experimental.topologies name, "" for this machine's CPU
    chip_config: str
    host_bounds: tuple[int, int, int]  # chips per host
    memory_gib: float  # HBM per chip
    peak_flops: float  # bfloat16 per chip


TARGETS = {
    "v4-8": Target("v4:2x2x1", "megacore", (2, 2, 1), 32, 275e12),
    "v4-32": Target("v4:2x2x4", "megacore", (2, 2, 1), 32, 275e12),
    "v5e-4": Target("v5e:2x2", "default", (2, 2, 1), 16, 197e12),
    "v5e-16": Target("v5e:4x4", "default", (2, 2, 1), 16, 197e12),
    "v5p-8": Target("v5p:2x2x1", "megacore", (2, 2, 1), 95, 459e12),
    "cpu": Target("", "", (1, 1, 1), 0, 0),
}


def target_devices(name: str) -> tuple[list[Any], Target]:
    """The devices of target `name` (described, not present, for TPUs) and its figures."""
    if name not in TARGETS:
        gpu = " (GPUs cannot be compiled for without one: see benchmarks/README.md)" if "gpu" in name.lower() or \
            name.lower().startswith(("h100", "h200", "a100")) else ""
        raise UserError(f"unknown --target {name!r}{gpu}: use one of {', '.join(TARGETS)}")
    target = TARGETS[name]
    if not target.topology:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
        return jax.devices("cpu"), dataclasses.replace(target, memory_gib=memory)
    from jax.experimental import topologies

    try:
        topology = topologies.get_topology_desc(
            platform="tpu", topology_name=target.topology, chip_config_name=target.chip_config,
            chips_per_host_bounds=target.host_bounds, num_slices=1,
        )
    except Exception as error:  # noqa: BLE001 - libtpu missing or too old: one line, with the fix
        raise UserError(f"cannot describe TPU {name} ({str(error).splitlines()[0][:160]}): compiling for TPUs "
                        "needs libtpu, `pip install -e '.[tpu]'`") from None
    return list(topology.devices), target


def plan(config: ml_collections.ConfigDict, target_name: str, search: bool = True) -> dict[str, Any]:
    """Memory per chip and FLOPs of the config's train step on the target, whether it fits, and (search) the
    largest data.batch_tokens that fits, found by compiling."""
    devices, target = target_devices(target_name)
    if config.model.dtype == "auto":  # as training on the target would resolve it (this process runs on the CPU)
        config = ml_collections.ConfigDict(config.to_dict())
        config.model.dtype = "bfloat16" if devices[0].platform in ("tpu", "gpu") else "float32"
    result = {"target": target_name, "chips": len(devices), "chip_memory_gib": round(target.memory_gib, 1),
              "compute_dtype": config.model.dtype, **_compiled(config, devices)}
    result["fits"] = result["peak_gib"] <= HEADROOM * target.memory_gib
    if target.peak_flops:
        result["estimated_step_s"] = round(result["flops_per_chip"] / (target.peak_flops * MEASURED_MFU), 4)
    from t2t_jax.configuration import is_language_model

    if not is_language_model(config):  # beam search over sources
        result.update(_compiled_decoding(config, devices))
        result["decode_fits"] = result["decode_peak_gib"] <= HEADROOM * target.memory_gib
    if search:
        result["largest_batch_tokens"] = _largest_batch(config, devices, target, result)
    return result


def _compiled_decoding(config: ml_collections.ConfigDict, devices: list[Any]) -> dict[str, Any]:
    """Memory per chip of beam search as `t2t-jax decode` runs it on the target: the decoding model (per-layer
    parameters, split by the rules over the mesh), a batch of decode.batch_tokens source tokens per chip at the
    longest source bucket, the encoder + cache program and the search loop's program (the larger peak)."""
    from t2t_jax import sharding
    from t2t_jax.configuration import model_config
    from t2t_jax.model import Transformer
    from t2t_jax.model.inference import decoding_config
    from t2t_jax.settings import DecodeSettings
    from t2t_jax.translate import BeamDecoder

    decode = DecodeSettings.from_config(config.decode)
    mesh = sharding.make_mesh(config.mesh, devices)
    model = decoding_config(model_config(config, config.data.vocab_size))
    dummy = jnp.ones((1, 8), jnp.int32)
    params = sharding.abstract_state(lambda: Transformer(model).init(jax.random.PRNGKey(0), dummy, dummy)["params"],
                                     mesh)
    length = config.data.max_source_length
    rows = max(decode.batch_tokens // length, 1) * sharding.batch_parallelism(mesh)
    inputs = jax.ShapeDtypeStruct((rows, length), jnp.int32, sharding=sharding.batch_sharding(mesh))
    decoder, ensemble = BeamDecoder(model, decode.beam_size, decode.alpha, decode.max_extra_length, mesh), (params,)
    try:
        prepare = decoder._prepare.lower(ensemble, inputs).compile()
        caches = jax.eval_shape(decoder._prepare, ensemble, inputs)
        search = decoder._search.lower(ensemble, inputs, caches, jax.ShapeDtypeStruct((), jnp.int32)).compile()
    except Exception as error:  # noqa: BLE001 - XLA's out-of-memory and resource errors, as one line
        raise UserError(f"beam search does not compile for {len(devices)} {devices[0].platform} chips "
                        f"({str(error).splitlines()[0][:300]}): lower decode.batch_tokens") from None
    peak = max(_peak_bytes(program.memory_analysis()) for program in (prepare, search))
    return {"decode_batch": [rows, length], "decode_beam_size": decode.beam_size,
            "decode_peak_gib": round(peak / GIB, 4)}


class CompiledStep(NamedTuple):
    compiled: Any  # jax.stages.Compiled
    abstract: Any  # the train state as sharded ShapeDtypeStructs
    mesh: Mesh
    microbatch: tuple[int, int]  # [rows, length], global
    accumulation: int


def compile_step(config: ml_collections.ConfigDict, devices: list[Any]) -> CompiledStep:
    """Compiles the step that training would run on `devices`: one update from one microbatch, or with gradient
    accumulation its microbatch program."""
    from t2t_jax import sharding
    from t2t_jax.train import step
    from t2t_jax.train.loop import accumulation_steps
    from t2t_jax.train.state import training

    mesh = sharding.make_mesh(config.mesh, devices)
    setup = training(config, config.data.vocab_size, mesh)
    abstract, programs = setup.abstract, setup.programs
    rows, length = _batch_shape(config, len(devices))
    batch = {name: jax.ShapeDtypeStruct((rows, length), jnp.int32, sharding=sharding.batch_sharding(mesh))
             for name in ("inputs", "targets")}
    key = jax.eval_shape(lambda: step.dropout_key(0, 0))
    accumulation = accumulation_steps(config, len(devices))
    try:
        if accumulation == 1:
            compiled = programs.train_step.lower(abstract, batch, key, jax.ShapeDtypeStruct((), jnp.float32)).compile()
        else:
            compiled = programs.compute_gradients.lower(abstract.params, batch, key).compile()
    except Exception as error:  # noqa: BLE001 - XLA's out-of-memory and resource errors, as one line
        first_line = str(error).splitlines()[0][:300]
        if "RESOURCE_EXHAUSTED" in first_line:
            raise UserError(f"the train step does not fit {len(devices)} {devices[0].platform} chips ({first_line}): "
                            "lower data.batch_tokens or split the parameters over more chips (mesh.fsdp)") from None
        raise UserError(f"the train step does not compile for {len(devices)} {devices[0].platform} chips: "
                        f"{first_line}") from None
    return CompiledStep(compiled, abstract, mesh, (rows, length), accumulation)


def _compiled(config: ml_collections.ConfigDict, devices: list[Any]) -> dict[str, Any]:
    """The compiled step's memory and FLOPs per chip."""
    step = compile_step(config, devices)
    memory = step.compiled.memory_analysis()
    cost = step.compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    state_bytes = sum(_shard_bytes(leaf) for leaf in jax.tree_util.tree_leaves(step.abstract))
    peak = _peak_bytes(memory)
    if step.accumulation > 1:  # the summed gradients live beside the microbatch program
        peak += sum(_shard_bytes(leaf) for leaf in jax.tree_util.tree_leaves(step.abstract.params))
    return {
        "mesh": dict(step.mesh.shape), "batch_tokens": config.data.batch_tokens, "microbatch": list(step.microbatch),
        "accumulation": step.accumulation, "state_gib": round(state_bytes / GIB, 4),
        "temporaries_gib": round(memory.temp_size_in_bytes / GIB, 4), "peak_gib": round(peak / GIB, 4),
        "flops_per_chip": float(cost.get("flops", 0.0)) if cost else 0.0,
    }


def _batch_shape(config: ml_collections.ConfigDict, devices: int) -> tuple[int, int]:
    """The largest bucket's microbatch: data.batch_tokens per device at the longest padded length."""
    data = config.data
    length = data.pack_length if data.packing else max(data.max_source_length, data.max_target_length)
    per_device = data.batch_tokens // length
    if per_device < 1:
        raise UserError(f"data.batch_tokens={data.batch_tokens} holds no sequence of {length} tokens per device")
    return per_device * devices, length


def _peak_bytes(memory: Any) -> int:
    """A compiled program's memory per chip: its arguments, outputs and temporaries (donated buffers once)."""
    return (memory.argument_size_in_bytes + memory.output_size_in_bytes - memory.alias_size_in_bytes
            + memory.temp_size_in_bytes)


def _shard_bytes(leaf: jax.ShapeDtypeStruct) -> int:
    return math.prod(leaf.sharding.shard_shape(leaf.shape)) * np.dtype(leaf.dtype).itemsize


def _largest_batch(config: ml_collections.ConfigDict, devices: list[Any], target: Target, first: dict) -> int:
    """The largest data.batch_tokens (whole sequences per device) whose step fits the chip, by compiling: doubling
    from the config's (at most 64x: a larger answer is reported as that bound), then halving the gap (at most 10
    compilations in all)."""
    length, per_device = first["microbatch"][1], first["microbatch"][0] // len(devices)
    fits = lambda rows: _fits(config, devices, target, rows * length)  # noqa: E731
    if first["fits"]:
        good, bad = per_device, None
        while bad is None and good < 64 * per_device:
            good, bad = (good * 2, None) if fits(good * 2) else (good, good * 2)
        if bad is None:
            return good * length
    else:
        good, bad = 0, per_device
    for _ in range(4):
        if bad - good <= max(1, good // 16):
            break
        middle = (good + bad) // 2
        good, bad = (middle, bad) if fits(middle) else (good, middle)
    return good * length


def _fits(config: ml_collections.ConfigDict, devices: list[Any], target: Target, batch_tokens: int) -> bool:
    trial = ml_collections.ConfigDict(config.to_dict())
    trial.data.batch_tokens = batch_tokens
    trial.train.tokens_per_update = 0  # one microbatch per update: its memory is the question
    try:
        return _compiled(trial, devices)["peak_gib"] <= HEADROOM * target.memory_gib
    except UserError:
        return False


def report_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        f"{result['target']}: {result['chips']} chips, mesh {result['mesh']}, {result['chip_memory_gib']} GiB each",
        f"microbatch {result['microbatch'][0]} x {result['microbatch'][1]} (data.batch_tokens "
        f"{result['batch_tokens']} per chip), {result['accumulation']} per update, compute {result['compute_dtype']}",
        f"per chip: state (parameters + optimizer) {result['state_gib']} GiB, temporaries "
        f"{result['temporaries_gib']} GiB, peak {result['peak_gib']} GiB: "
        + ("fits" if result["fits"] else f"does NOT fit ({HEADROOM:.0%} of the chip's memory)"),
        f"FLOPs per chip per step {result['flops_per_chip']:.3e}"
        + (f", ~{result['estimated_step_s']} s per step at {MEASURED_MFU:.1%} MFU"
           if "estimated_step_s" in result else ""),
    ]
    if "decode_peak_gib" in result:
        rows, length = result["decode_batch"]
        lines.append(f"beam search ({result['decode_beam_size']} beams, {rows} sources x {length} tokens): peak "
                     f"{result['decode_peak_gib']} GiB per chip: "
                     + ("fits" if result["decode_fits"] else "does NOT fit: lower decode.batch_tokens"))
    if "largest_batch_tokens" in result:
        lines.append(f"largest data.batch_tokens that fits: {result['largest_batch_tokens']} per chip")
    return lines
