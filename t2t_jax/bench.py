"""`t2t-jax bench`: train-step speed, FLOPs, MFU, memory, beam decode speed and input pipeline speed.

Synthetic batches (random tokens), so it runs anywhere JAX runs, tensorflow or not. Model FLOPs are analytic
(6 x matmul parameters x tokens, plus attention, counted per token stream: the encoder sees source tokens, the
decoder target tokens) and cross-checked against XLA's cost analysis of the compiled step. MFU divides the
analytic FLOP rate by the device's peak: the datasheet dense peak on GPU/TPU, and on CPU (no datasheet) a
matrix-multiply peak measured in the same run.
"""

from __future__ import annotations

import functools
import json
import platform
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from t2t_jax import sharding
from t2t_jax.configuration import model_config
from t2t_jax.model import Transformer, TransformerConfig
from t2t_jax.model.inference import decoding_config
from t2t_jax.train import step
from t2t_jax.train.state import training

# Dense peak FLOP/s per chip from the vendors' datasheets (no sparsity).
DATASHEET_PEAKS = {
    # float32 matmuls run on TF32 tensor cores under JAX's default precision on these GPUs: TF32 peak
    "H100": {"bfloat16": 989e12, "float32": 495e12},
    "H200": {"bfloat16": 989e12, "float32": 495e12},
    "A100": {"bfloat16": 312e12, "float32": 156e12},
    "TPU v3": {"bfloat16": 123e12, "float32": 123e12 / 4},
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12 / 4},
    "TPU v5 lite": {"bfloat16": 197e12, "float32": 197e12 / 4},
}


def analytic_train_flops(cfg: TransformerConfig, batch: int, source_length: int, target_length: int) -> float:
    """FLOPs of one training step (forward + backward = 3 x forward) of the encoder-decoder (of the decoder alone
    for a decoder-only model: no encoder, no cross-attention)."""
    d, ff, heads = cfg.d_model, cfg.d_ff, cfg.num_heads
    qk, v = heads * cfg.key_size, heads * cfg.value_size
    source, target = batch * source_length, batch * target_length
    projections = d * (2 * qk + 2 * v)  # q, k, v, o per token when all come from the same stream
    if cfg.kind == "decoder_only":
        encoder = 0
        decoder = cfg.num_decoder_layers * (target * (projections + 2 * d * ff) + batch * target_length**2 * (qk + v))
    else:
        encoder = cfg.num_encoder_layers * (source * (projections + 2 * d * ff) + batch * source_length**2 * (qk + v))
        decoder = cfg.num_decoder_layers * (
            target * (projections + d * (qk + v) + 2 * d * ff)  # self-attention, cross q and o, feed-forward
            + source * d * (qk + v)  # cross-attention keys and values from the encoder output
            + batch * (target_length**2 + target_length * source_length) * (qk + v)  # attention scores and sums
        )
    logits = target * d * cfg.output_vocab_size
    return 3 * 2 * (encoder + decoder + logits)


def measured_matmul_peak(dtype: Any, size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a large square matrix product on this device (the CPU's peak, measured)."""
    a = jnp.ones((size, size), dtype)
    product = jax.jit(lambda x: functools.reduce(lambda acc, _: acc @ x, range(4), x))
    jax.block_until_ready(product(a))
    start = time.perf_counter()
    for _ in range(repeats):
        result = product(a)
    jax.block_until_ready(result)
    return 4 * 2 * size**3 * repeats / (time.perf_counter() - start)


def device_peak(dtype_name: str) -> tuple[float, str]:
    kind = jax.devices()[0].device_kind
    for name, peaks in DATASHEET_PEAKS.items():
        if name.lower() in kind.lower():
            return peaks[dtype_name], f"datasheet peak of {kind}"
    if jax.devices()[0].platform == "cpu":
        return measured_matmul_peak(jnp.dtype(dtype_name)), "matmul peak measured in this run"
    return float("nan"), f"no datasheet peak known for {kind}"


def _median_seconds(run: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def top_ops(trace_dir: str, count: int = 25) -> list[tuple[str, float]]:
    """(op or kernel name, total milliseconds) of the busiest entries of a jax.profiler perfetto trace."""
    import collections
    import glob
    import gzip

    path = sorted(glob.glob(f"{trace_dir}/**/*.json.gz", recursive=True))[-1]
    with gzip.open(path) as f:
        events = json.load(f)["traceEvents"]
    totals: collections.Counter = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and not event["name"].startswith(("$", "ThunkExecutor", "Thunk")):
            totals[event["name"]] += event.get("dur", 0) / 1000
    return [(name, round(ms, 2)) for name, ms in totals.most_common(count)]


def bench_train(config: ml_collections.ConfigDict, vocab_size: int, batch: int, length: int, steps: int,
                profile_dir: str = "") -> dict:
    """Compile time, step time, tokens/s, FLOPs and MFU, memory of the jitted train step; with profile_dir,
    also a trace of three steps and its busiest operations."""
    mesh = sharding.make_mesh(config.mesh)
    setup = training(config, vocab_size, mesh)
    model_cfg, train_step = setup.model_config, setup.programs.train_step
    state, _ = sharding.sharded_init(setup.init, mesh)
    rng = np.random.default_rng(0)
    tokens = {name: rng.integers(3, vocab_size, (batch, length)).astype(np.int32) for name in ("inputs", "targets")}
    batch_arrays = sharding.global_batch(tokens, sharding.batch_sharding(mesh))

    key, scale = step.dropout_key(0, 0), jnp.float32(1)
    start = time.perf_counter()
    compiled = train_step.lower(state, batch_arrays, key, scale).compile()
    compile_seconds = time.perf_counter() - start
    holder = {"state": state}

    def run() -> Any:
        holder["state"], metrics = compiled(holder["state"], batch_arrays, key, scale)
        return metrics["loss"]

    run()
    seconds = _median_seconds(run, steps)
    busiest = []
    if profile_dir:
        with jax.profiler.trace(profile_dir, create_perfetto_trace=True):
            for _ in range(3):
                jax.block_until_ready(run())
        busiest = top_ops(profile_dir)
    flops = analytic_train_flops(model_cfg, batch, length, length)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    peak, peak_source = device_peak(model_cfg.dtype.name)
    memory = compiled.memory_analysis()
    stats = jax.devices()[0].memory_stats() or {}
    return {
        "compile_s": round(compile_seconds, 2),
        "step_s": round(seconds, 4),
        "tokens_per_s": round(2 * batch * length / seconds, 1),
        "model_flops_per_step": flops,
        "xla_flops_per_step": float(cost.get("flops", float("nan"))) if cost else float("nan"),
        "achieved_tflops": round(flops / seconds / 1e12, 3),
        "peak_tflops": round(peak / 1e12, 3),
        "peak_source": peak_source,
        "mfu": round(flops / seconds / peak, 4),
        "memory_estimate_gib": round(_memory_bytes(memory) / 2**30, 3) if memory else None,
        "memory_peak_gib": round(stats["peak_bytes_in_use"] / 2**30, 3) if "peak_bytes_in_use" in stats else None,
        **({"profile_top_ops_ms_per_3_steps": busiest} if busiest else {}),
    }


def _memory_bytes(analysis: Any) -> int:
    """XLA's estimate of the device memory a compiled program needs: arguments, outputs and temporaries."""
    return (analysis.argument_size_in_bytes + analysis.output_size_in_bytes + analysis.temp_size_in_bytes
            - analysis.alias_size_in_bytes)


def bench_decode(config: ml_collections.ConfigDict, vocab_size: int, batch: int, source_length: int,
                 repeats: int) -> dict:
    """Beam search (config.decode beam and alpha) on random weights and random sources."""
    from t2t_jax.translate import BeamDecoder

    model_cfg = decoding_config(model_config(config, vocab_size))
    rng = np.random.default_rng(0)
    inputs = rng.integers(3, vocab_size, (batch, source_length)).astype(np.int32)
    params = jax.jit(Transformer(model_cfg).init)(jax.random.PRNGKey(0), inputs, inputs[:, :4])["params"]
    from flax import linen as nn

    params = nn.unbox(params)
    decoder = BeamDecoder(model_cfg, config.decode.beam_size, config.decode.alpha, config.decode.max_extra_length)
    start = time.perf_counter()
    sequences, _ = decoder(params, inputs)
    first = time.perf_counter() - start
    seconds = _median_seconds(lambda: decoder(params, inputs), repeats)
    return {
        "batch": batch, "source_length": source_length, "max_length": source_length + config.decode.max_extra_length,
        "beam_size": config.decode.beam_size, "first_call_s": round(first, 2), "batch_s": round(seconds, 4),
        "sentences_per_s": round(batch / seconds, 2),
        "output_tokens": int(np.max(np.sum(sequences[:, 0] > 0, axis=-1))),
    }


def bench_pipeline(config: ml_collections.ConfigDict, seconds: float = 10.0) -> dict:
    """Training batches per second from the config's own data source (needs tensorflow)."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return {"skipped": "tensorflow is not installed here"}
    import tempfile

    from t2t_jax import data

    with tempfile.TemporaryDirectory() as workdir:
        tokenizer = data.build_vocabulary(config.data, workdir)
        iterator = data.train_iterator(config.data, tokenizer)
        next(iterator)
        tokens, batches, start = 0, 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            batch = next(iterator)
            tokens += int(np.count_nonzero(batch["inputs"]) + np.count_nonzero(batch["targets"]))
            batches += 1
        elapsed = time.perf_counter() - start
    return {"source": config.data.train, "tokens_per_s": round(tokens / elapsed, 1), "batches": batches}


def run_bench(config: ml_collections.ConfigDict, *, vocab_size: int, batch: int, length: int, steps: int,
              decode_batch: int, decode_source_length: int, pipeline: bool, profile_dir: str = "") -> dict:
    device = jax.devices()[0]
    result = {
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()}), {jax.device_count()} x "
                   f"{device.device_kind} [{device.platform}]",
        "jax": jax.__version__,
        "model": {key: config.model[key] for key in ("d_model", "d_ff", "num_heads", "num_encoder_layers",
                                                     "num_decoder_layers", "dtype", "scan_layers", "remat")},
        "vocab_size": vocab_size, "batch": batch, "length": length, "dropout_rate": config.model.dropout_rate,
    }
    result["train"] = bench_train(config, vocab_size, batch, length, steps, profile_dir)
    if decode_batch:
        result["decode"] = bench_decode(config, vocab_size, decode_batch, decode_source_length, max(steps // 2, 2))
    if pipeline:
        result["pipeline"] = bench_pipeline(config)
    return result


def print_report(result: dict) -> None:
    train = result["train"]
    print(f"machine: {result['machine']}, jax {result['jax']}")
    print(f"model: {result['model']}, vocab {result['vocab_size']}, batch {result['batch']} x {result['length']}")
    print(f"train: compile {train['compile_s']} s, step {train['step_s']} s, {train['tokens_per_s']} tokens/s "
          "(source + target)")
    print(f"FLOPs/step: analytic {train['model_flops_per_step']:.4g}, XLA cost analysis "
          f"{train['xla_flops_per_step']:.4g}; {train['achieved_tflops']} TFLOP/s = MFU {100 * train['mfu']:.1f}% "
          f"of {train['peak_tflops']} TFLOP/s ({train['peak_source']})")
    print(f"memory: XLA estimate {train['memory_estimate_gib']} GiB, allocator peak {train['memory_peak_gib']} GiB")
    if "decode" in result:
        decode = result["decode"]
        print(f"beam-{decode['beam_size']} decode: batch {decode['batch']}, source {decode['source_length']}, max "
              f"{decode['max_length']}: {decode['sentences_per_s']} sentences/s ({decode['batch_s']} s/batch, "
              f"first call {decode['first_call_s']} s)")
    for name, milliseconds in train.get("profile_top_ops_ms_per_3_steps", [])[:15]:
        print(f"  profile: {milliseconds:9.2f} ms  {name[:110]}")
    if "pipeline" in result:
        print(f"input pipeline: {json.dumps(result['pipeline'])}")
