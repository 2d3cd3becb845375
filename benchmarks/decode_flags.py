"""XLA CPU flags for beam-search decoding (issue 13 item 6): sentences/s of t2t_jax.translate.BeamDecoder under
each XLA_FLAGS variant against the default, interleaved in one run, and whether the outputs stay identical.

    python benchmarks/decode_flags.py [--rounds 5] [--group 4] [--variants default onednn ...]
        [--json benchmarks/cpu/decode_flags.json]

Setting as benchmarks/ctranslate2_vs_jax.py's speed part: the base model (d_model 512, 6+6 layers) with random
weights and a 32k vocabulary, 16 random sources of 24 tokens, beam 4, at most 74 output steps. The weights are
made once (here, default flags) and every variant decodes them. XLA_FLAGS are read once, when jax starts, so
each variant is its own worker process that compiles once (first call excluded) and then decodes the batch
whenever the driver asks: the driver runs variants in groups (the default in every group, as many processes
alive at once as --group), round by round, each round in a fresh random order (the CPU is shared), and
reports each variant's best round against its group's default. "equal" compares the token sequences
[batch, beam, length] with the default's exactly (scores: largest absolute difference).
"""

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time

import decode_problem  # benchmarks/decode_problem.py
import numpy as np

VARIANTS = {
    "default": "",
    # this jaxlib fuses dots and elementwise ops into YNNPACK ("__ynn_fusion") by default, whatever the
    # xnnpack flags say: --xla_cpu_use_xnnpack=false leaves the program as it is
    "no_xnnpack": "--xla_cpu_use_xnnpack=false",
    "ynn_eltwise_only (no YNN dots)": "--xla_cpu_experimental_ynn_fusion_type=eltwise",
    "ynn_eltwise_only_no_xnnpack": "--xla_cpu_experimental_ynn_fusion_type=eltwise --xla_cpu_use_xnnpack=false",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn_ynn_eltwise_only": "--xla_cpu_use_onednn=true --xla_cpu_experimental_ynn_fusion_type=eltwise",
    "onednn_fusion_dot_eltwise_reduce": "--xla_cpu_use_onednn=true "
                                        "--xla_cpu_experimental_onednn_fusion_type=dot,eltwise,reduce",
    "xnn_fusion_dot_eltwise_reduce": "--xla_cpu_experimental_xnn_fusion_type=dot,eltwise,reduce",
    "xnn_graph_fusion_greedy": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "ynn_fusion_dot": "--xla_cpu_experimental_ynn_fusion_type=dot",
    "single_thread_eigen": "--xla_cpu_multi_thread_eigen=false",
    "fast_math": "--xla_cpu_enable_fast_math=true",
    "vector_width_512": "--xla_cpu_prefer_vector_width=512",
    "opt_preset_fast_runtime": "--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_RUNTIME",
}


def worker(args):
    """One variant: compile, then decode on every 'run' line of stdin; answers one JSON line each."""
    import jax
    import numpy as np

    from t2t_jax.model import TransformerConfig
    from t2t_jax.translate import BeamDecoder

    with np.load(args.params) as f:
        flat = {key: f[key] for key in f.files}
    params = {}
    for key, value in flat.items():
        node = params
        *path, leaf = key.split("/")
        for name in path:
            node = node.setdefault(name, {})
        node[leaf] = value
    inputs = np.load(args.inputs)
    config = TransformerConfig.base(vocab_size=args.vocab)
    decoder = BeamDecoder(config, args.beam_size, args.alpha, args.max_length - args.source_length)
    params = jax.device_put(params)
    start = time.perf_counter()
    sequences, scores = decoder(params, inputs)
    first = time.perf_counter() - start
    np.save(args.output, sequences)
    np.save(args.output.replace(".npy", "_scores.npy"), scores)
    print(json.dumps({"ready": True, "first_call_s": round(first, 2)}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        start = time.perf_counter()
        sequences, scores = decoder(params, inputs)
        took = time.perf_counter() - start
        print(json.dumps({"seconds": took}), flush=True)


def make_inputs(args, scratch):
    import jax
    import jax.numpy as jnp
    from flax import linen as nn
    from flax import traverse_util

    from t2t_jax.model import Transformer, TransformerConfig

    config = TransformerConfig.base(vocab_size=args.vocab)
    rng = np.random.default_rng(0)
    inputs = rng.integers(3, args.vocab, (args.batch, args.source_length)).astype(np.int32)  # as decode.py
    params = nn.unbox(jax.jit(Transformer(config).init)(jax.random.PRNGKey(0), jnp.asarray(inputs),
                                                        jnp.asarray(inputs[:, :4]))["params"])
    flat = {"/".join(path): np.asarray(value) for path, value in traverse_util.flatten_dict(params).items()}
    np.savez(os.path.join(scratch, "params.npz"), **flat)
    np.save(os.path.join(scratch, "inputs.npy"), inputs)


def start_worker(name, flags, args, scratch):
    environment = dict(os.environ, XLA_FLAGS=flags)
    output = os.path.join(scratch, f"{abs(hash(name))}.npy")
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--params", os.path.join(scratch, "params.npz"),
               "--inputs", os.path.join(scratch, "inputs.npy"), "--output", output]
    for key in ("vocab", "batch", "source_length", "max_length", "beam_size", "alpha"):
        command += [f"--{key}", str(getattr(args, key))]
    process = subprocess.Popen(command, env=environment, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line:
        error = process.stderr.read().strip().splitlines()
        process.wait()
        return None, {"error": " | ".join(error[-3:])[-600:]}
    return process, {**json.loads(line), "output": output}


def run_group(names, args, scratch, results):
    processes = {}
    for name in names:  # compiled one after another, so that compilations do not compete
        process, info = start_worker(name, VARIANTS[name], args, scratch)
        results[name] = {"xla_flags": VARIANTS[name], **info, "rounds_s": []}
        if process is not None:
            processes[name] = process
        print(json.dumps({name: {k: v for k, v in info.items() if k != "output"}}), flush=True)
    for _ in range(args.rounds):
        order = list(processes)
        random.shuffle(order)
        for name in order:
            process = processes[name]
            process.stdin.write("run\n")
            process.stdin.flush()
            results[name]["rounds_s"].append(json.loads(process.stdout.readline())["seconds"])
        print(json.dumps({name: round(results[name]["rounds_s"][-1], 2) for name in processes}), flush=True)
    for process in processes.values():
        process.stdin.close()
        process.wait()
    base = results[names[0]]
    reference = np.load(base["output"])
    reference_scores = np.load(base["output"].replace(".npy", "_scores.npy"))
    for name in processes:
        row = results[name]
        row["best_s"] = round(min(row["rounds_s"]), 3)
        row["sentences_per_s"] = round(args.batch / row["best_s"], 2)
        row["ratio_to_default"] = round(base["best_s"] / row["best_s"], 3)
        row["rounds_s"] = [round(t, 3) for t in row["rounds_s"]]
        sequences = np.load(row["output"])
        scores = np.load(row["output"].replace(".npy", "_scores.npy"))
        row["sequences_equal_default"] = bool(np.array_equal(sequences, reference))
        row["max_abs_score_difference"] = float(np.max(np.abs(scores - reference_scores)))
        row["equal_rows_percent"] = round(100 * float(np.mean(np.all(sequences == reference, axis=-1))), 1)
        del row["output"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--params")
    parser.add_argument("--inputs")
    parser.add_argument("--output")
    decode_problem.add_arguments(parser, rounds=5)
    parser.add_argument("--group", type=int, default=4, help="worker processes alive at once, the default included")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS)[1:])
    parser.add_argument("--json", default="benchmarks/cpu/decode_flags.json")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    random.seed(0)
    groups = []
    with tempfile.TemporaryDirectory() as scratch:
        make_inputs(args, scratch)
        others = [name for name in args.variants if name != "default"]
        size = max(1, args.group - 1)
        for index in range(0, len(others), size):
            names = ["default"] + others[index:index + size]
            group = {}
            run_group(names, args, scratch, group)
            groups.append({name: group[name] for name in names})
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)",
        "command": " ".join(["python"] + sys.argv),
        "setting": {"model": "base (d_model 512, 6+6 layers), random weights", "vocab": args.vocab,
                    "batch": args.batch, "source_length": args.source_length, "max_output_steps": args.max_length,
                    "beam_size": args.beam_size, "alpha": args.alpha, "rounds": args.rounds},
        "groups": groups,
        "summary": [
            {"variant": name, "sentences_per_s": row.get("sentences_per_s"), "ratio_to_default":
             row.get("ratio_to_default"), "sequences_equal_default": row.get("sequences_equal_default"),
             "error": row.get("error")}
            for group in groups for name, row in group.items()
        ],
    }
    print(json.dumps(report["summary"], indent=1), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
