"""CTranslate2 against our JAX decoding, in one run: the same translations, BLEU, and offline decoding speed.

    python benchmarks/ctranslate2_vs_jax.py [--workdir runs/multi30k] [--checkpoint averaged]
        [--source ../shared/data/multi30k/test.en --reference ../shared/data/multi30k/test.de]
        [--rounds 3] [--json benchmarks/cpu/ctranslate2_vs_jax.json] [--skip_equality] [--skip_speed]

Equality: the workdir's model (beam and alpha of its config's decode section) translates the test set with our
Translator, then exported to CTranslate2 float32 and int8 (t2t_jax.serving.ctranslate2) and translated with
CTranslate2Translator: % of lines identical to ours, sacreBLEU (13a) of each, and the share of identical lines
for a few CTranslate2Translator patience values (finished hypotheses collected = beam * patience).

Speed (issue 13 item 6): the base model (d_model 512, 6+6 layers) with random weights and a 32k vocabulary,
16 random sources of 24 tokens, beam 4, at most 74 output steps (source + 50), as benchmarks/decode.py: our
BeamDecoder (two compiled programs, first call excluded) against CTranslate2 float32 and int8 running
(a) its own beam search (length_penalty = alpha, patience 1) and (b) CTranslate2Translator's search (raw
log-probabilities, beam * patience finished hypotheses, our GNMT rescoring; random weights never end a
hypothesis, so every one is cut at the limit and rescored: the backend's worst case). Sides run interleaved,
round by round (the CPU is shared), best round of each reported. On AMD CPUs CTranslate2 runs float32 on oneDNN
unless CT2_USE_MKL=1 (then Intel MKL); run once with it and --skip_equality --speed_key speed_ct2_use_mkl to
compare (the JSON keeps the other parts).
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import decode_problem  # benchmarks/decode_problem.py
import jax
import jax.numpy as jnp
import numpy as np
import sacrebleu
from flax import linen as nn
from sentencepiece import sentencepiece_model_pb2

from t2t_jax.data.tokenizer import Tokenizer
from t2t_jax.model import Transformer, TransformerConfig
from t2t_jax.serving.ctranslate2 import CTranslate2Translator, export_ctranslate2, write_export
from t2t_jax.translate import BeamDecoder, Translator

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared", "data",
                    "multi30k")
THREADS = os.cpu_count()


def bleu(hypotheses, references):
    return round(sacrebleu.metrics.BLEU().corpus_score(hypotheses, [references]).score, 2)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def equality(args):
    """Ours, CTranslate2 float32 and int8 on the test set: identical lines, BLEU, seconds."""
    with open(args.source) as f:
        lines = [line.rstrip("\n") for line in f]
    with open(args.reference) as f:
        references = [line.rstrip("\n") for line in f]
    ours_translator = Translator.from_workdir(args.workdir, args.checkpoint)
    ours, ours_s = timed(ours_translator.translate, lines)
    row = {"workdir": args.workdir, "checkpoint": args.checkpoint, "lines": len(lines),
           "beam_size": ours_translator.beam_size, "alpha": ours_translator.alpha,
           "ours": {"bleu": bleu(ours, references), "seconds": round(ours_s, 1)}}
    print(json.dumps(row), flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for quantize in (None, "int8"):
            folder = os.path.join(scratch, quantize or "float32")
            export_ctranslate2(args.workdir, folder, args.checkpoint, quantize)
            translator = CTranslate2Translator.from_export(folder, intra_threads=THREADS)
            theirs, seconds = timed(translator.translate, lines)
            same = sum(a == b for a, b in zip(ours, theirs))
            result = {"bleu": bleu(theirs, references), "identical_to_ours_percent": round(100 * same / len(lines), 2),
                      "identical_lines": same, "seconds": round(seconds, 1), "patience": translator.patience}
            if quantize is None:
                result["identical_percent_by_patience"] = patience_sweep(translator, lines, ours, args.patience)
                differing = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
                result["differing_examples"] = [
                    {"line": i, "source": lines[i], "ours": ours[i], "ctranslate2": theirs[i]} for i in differing[:5]
                ]
            row["ctranslate2_" + (quantize or "float32")] = result
            print(json.dumps({quantize or "float32": result}), flush=True)
    row["int8_minus_float32_bleu"] = round(row["ctranslate2_int8"]["bleu"] - row["ctranslate2_float32"]["bleu"], 2)
    return row


def patience_sweep(translator, lines, ours, patiences):
    shares = {}
    default = translator.patience
    for patience in patiences:
        translator.patience = patience
        theirs, seconds = timed(translator.translate, lines)
        shares[str(patience)] = {"identical_percent": round(100 * sum(a == b for a, b in zip(ours, theirs))
                                                            / len(lines), 2), "seconds": round(seconds, 1)}
    translator.patience = default
    return shares


def synthetic_vocabulary(path, size):
    """A SentencePiece model file with our special ids and `size` pieces ("▁t3", "▁t4", ...), for random models."""
    proto = sentencepiece_model_pb2.ModelProto()
    kinds = proto.SentencePiece
    for piece, kind in (("<pad>", kinds.CONTROL), ("</s>", kinds.CONTROL), ("<unk>", kinds.UNKNOWN)):
        proto.pieces.add(piece=piece, score=0.0, type=kind)
    for index in range(3, size):
        proto.pieces.add(piece=f"\u2581t{index}", score=0.0, type=kinds.NORMAL)
    trainer = proto.trainer_spec
    trainer.model_type = sentencepiece_model_pb2.TrainerSpec.WORD
    trainer.vocab_size = size
    trainer.pad_id, trainer.eos_id, trainer.unk_id, trainer.bos_id = 0, 1, 2, -1
    proto.normalizer_spec.name = "identity"
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())
    return Tokenizer.load(path)


def speed(args):
    config = TransformerConfig.base(vocab_size=args.vocab)
    rng = np.random.default_rng(0)
    inputs = rng.integers(3, args.vocab, (args.batch, args.source_length)).astype(np.int32)  # no EOS, as decode.py
    params = nn.unbox(jax.jit(Transformer(config).init)(jax.random.PRNGKey(0), jnp.asarray(inputs),
                                                        jnp.asarray(inputs[:, :4]))["params"])
    params = jax.tree_util.tree_map(np.asarray, params)
    extra = args.max_length - args.source_length
    ours = BeamDecoder(config, args.beam_size, args.alpha, extra)
    _, first = timed(ours, params, inputs)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = synthetic_vocabulary(os.path.join(scratch, "vocab.model"), args.vocab)
        sides = {"ours_jax": lambda: ours(params, inputs)}
        for quantize in ("float32", "int8"):
            folder = os.path.join(scratch, quantize)
            write_export(folder, config, params, tokenizer.path, step=0, beam_size=args.beam_size, alpha=args.alpha,
                         max_extra_length=extra, max_source_length=args.source_length,
                         quantize=None if quantize == "float32" else quantize)
            translator = CTranslate2Translator.from_export(folder, intra_threads=THREADS)
            sides.update(ctranslate2_sides(translator, inputs, quantize, args))
        seconds = {name: [] for name in sides}
        steps = {}
        for _ in range(args.rounds):
            for name, side in sides.items():
                result, took = timed(side)
                seconds[name].append(took)
                steps[name] = output_steps(result)
            print(json.dumps({name: round(times[-1], 2) for name, times in seconds.items()}), flush=True)
    rows = {name: {"best_s": round(min(times), 3), "sentences_per_s": round(args.batch / min(times), 2),
                   "rounds_s": [round(t, 2) for t in times], "longest_output_steps": steps[name]}
            for name, times in seconds.items()}
    rows["ours_jax"]["first_call_s"] = round(first, 2)
    base = rows["ours_jax"]["sentences_per_s"]
    ratios = {name: round(row["sentences_per_s"] / base, 2) for name, row in rows.items() if name != "ours_jax"}
    return {"model": "base (d_model 512, d_ff 2048, 8 heads, 6+6 layers), random weights", "vocab": args.vocab,
            "batch": args.batch, "source_length": args.source_length, "max_output_steps": args.max_length,
            "beam_size": args.beam_size, "alpha": args.alpha, "ctranslate2_intra_threads": THREADS,
            "rounds": args.rounds, "sides": rows, "speed_over_ours": ratios}


def ctranslate2_sides(translator, inputs, quantize, args):
    """(a) CTranslate2's own beam search; (b) CTranslate2Translator's search (our GNMT rescoring)."""
    pieces = [[translator.pieces[i] for i in row] for row in inputs]
    sources = [list(row) + [Tokenizer.EOS_ID] for row in inputs]  # the backend appends EOS, as ours does...
    backend_extra = args.max_length - len(sources[0])  # ...so 74 steps there too

    def native():
        return translator.translator.translate_batch(
            pieces, beam_size=args.beam_size, length_penalty=args.alpha, max_decoding_length=args.max_length,
            min_decoding_length=0, max_input_length=0, return_end_token=True,
        )

    def backend():
        translator.max_extra_length = backend_extra
        return translator.search(sources, args.beam_size, args.alpha)

    return {f"ctranslate2_{quantize}_native": native, f"ctranslate2_{quantize}_backend": backend}


def output_steps(result):
    """The longest best output, in tokens (EOS included where there is one)."""
    if isinstance(result, tuple):  # ours: sequences [batch, beam, length], 0 after EOS
        return int(np.max(np.sum(result[0][:, 0] > 0, axis=-1)))
    if isinstance(result, dict):  # backend: index -> [(ids without EOS, score)]
        return max(len(hypotheses[0][0]) + 1 for hypotheses in result.values())
    return max(len(r.hypotheses[0]) for r in result)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="runs/multi30k")
    parser.add_argument("--checkpoint", default="averaged")
    parser.add_argument("--source", default=os.path.join(DATA, "test.en"))
    parser.add_argument("--reference", default=os.path.join(DATA, "test.de"))
    parser.add_argument("--patience", type=float, nargs="*", default=[1.0, 4.0])
    decode_problem.add_arguments(parser, rounds=3)
    parser.add_argument("--skip_equality", action="store_true")
    parser.add_argument("--skip_speed", action="store_true")
    parser.add_argument("--json", default="benchmarks/cpu/ctranslate2_vs_jax.json")
    parser.add_argument("--speed_key", default="speed", help="where the speed rows go in the JSON (kept: the rest)")
    args = parser.parse_args()

    import ctranslate2

    report = {}
    if args.json and os.path.exists(args.json):  # another run's parts are kept
        with open(args.json) as f:
            report = json.load(f)
    environment = {key: value for key, value in os.environ.items() if key.startswith("CT2_")}
    run = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), "
                      f"{jax.devices()[0].device_kind}", "ctranslate2": ctranslate2.__version__,
           "command": " ".join([f"{k}={v}" for k, v in environment.items()] + ["python"] + sys.argv)}
    if not args.skip_equality:
        report["equality"] = {**run, **equality(args)}
    if not args.skip_speed:
        report[args.speed_key] = {**run, **speed(args)}
        print(json.dumps(report[args.speed_key]["speed_over_ours"]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
