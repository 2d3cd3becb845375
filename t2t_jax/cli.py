"""The `t2t-jax` command: train, decode, eval, generate, average, attention, serve, export, bench, plan.

Mistakes a user can make end with one line on stderr ("error: ...") and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable

from t2t_jax import storage
from t2t_jax.errors import HideFullDiskTracebacks, UserError, drop_late_callbacks, storage_full

COMMANDS: dict[str, Callable[[argparse.Namespace, list[tuple[str, str]]], None]] = {}


def command(function: Callable) -> Callable:
    COMMANDS[function.__name__.removeprefix("run_")] = function
    return function


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t2t-jax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train (or resume) a model in a workdir")
    train.add_argument("--config", required=True, help="config file, e.g. configs/reverse.py")
    train.add_argument("--workdir", required=True)

    def decoding_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workdir", required=True, action="append",
                       help="a trained model; given several times: an ensemble (log-probabilities averaged)")
        p.add_argument("--checkpoint", default="latest", help="latest | best | averaged | a step number")
        p.add_argument("--beam_size", type=int, default=None, help="default: the workdir's decode.beam_size")
        p.add_argument("--alpha", type=float, default=None, help="length penalty; default: decode.alpha")

    decode = sub.add_parser("decode", help="translate lines (stdin/stdout by default)")
    decoding_options(decode)
    decode.add_argument("--input", default="-")
    decode.add_argument("--output", default="-")
    decode.add_argument("--nbest", type=int, default=1, help="n > 1: 'INDEX ||| TRANSLATION ||| SCORE' lines")

    evaluate = sub.add_parser("eval", help="translate a file and score it: sacreBLEU and chrF, or ROUGE "
                                           "(decode.metric=rouge)")
    decoding_options(evaluate)
    evaluate.add_argument("--source", required=True)
    evaluate.add_argument("--reference", required=True)
    evaluate.add_argument("--output", default="", help="also write the translations here")

    generate = sub.add_parser("generate", help="continue prompts with a language model (model.kind=decoder_only)")
    generate.add_argument("--workdir", required=True)
    generate.add_argument("--checkpoint", default="latest", help="latest | best | averaged | a step number")
    generate.add_argument("--prompt", default=None, help="one prompt ('' for none); default: lines of --input")
    generate.add_argument("--input", default="-", help="one prompt per line (stdin by default)")
    generate.add_argument("--output", default="-")
    generate.add_argument("--max_length", type=int, default=64, help="new tokens at most")
    generate.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    generate.add_argument("--top_k", type=int, default=0, help="sample from the k most likely tokens (0: all)")
    generate.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling: the smallest set with this "
                                                                   "probability")
    generate.add_argument("--beam_size", type=int, default=1, help="> 1: beam search instead of sampling")
    generate.add_argument("--alpha", type=float, default=0.6, help="beam search's length penalty")
    generate.add_argument("--num_samples", type=int, default=1, help="texts per prompt (one line each)")
    generate.add_argument("--seed", type=int, default=0, help="the same seed gives the same samples")

    average = sub.add_parser("average", help="average the last N checkpoints into workdir/averaged")
    average.add_argument("--workdir", required=True)
    average.add_argument("--last", type=int, required=True)

    bench = sub.add_parser("bench", help="train/decode speed, FLOPs, MFU and memory on synthetic batches")
    bench.add_argument("--config", required=True, help="e.g. configs/base.py (its model, optimizer, decoding)")
    bench.add_argument("--steps", type=int, default=5, help="timed train steps (median)")
    bench.add_argument("--batch", type=int, default=32, help="sentences per train step")
    bench.add_argument("--length", type=int, default=64, help="source and target tokens per sentence")
    bench.add_argument("--vocab", type=int, default=8000, help="shared vocabulary size")
    bench.add_argument("--decode_batch", type=int, default=16)
    bench.add_argument("--decode_source_length", type=int, default=24)
    bench.add_argument("--skip_decode", action="store_true")
    bench.add_argument("--pipeline", action="store_true", help="also time the config's input pipeline (tensorflow)")
    bench.add_argument("--json", default="", help="also write the results here")
    bench.add_argument("--profile", default="", help="trace 3 train steps into this folder; print the busiest ops")

    plan = sub.add_parser("plan", help="compile the train step ahead of time for a TPU slice (or this CPU): "
                                       "memory per chip, FLOPs, the largest batch that fits")
    plan.add_argument("--config", required=True)
    plan.add_argument("--target", default="cpu", help="v4-8 | v4-32 | v5e-4 | v5e-16 | v5p-8 | cpu")
    plan.add_argument("--no_search", action="store_true", help="skip the search for the largest batch")
    plan.add_argument("--json", default="", help="also write the results here")

    attention = sub.add_parser("attention", help="draw a model's attention for a sentence (.png or .html)")
    decoding_options(attention)
    attention.add_argument("--source", required=True, help="the source sentence (not a file)")
    attention.add_argument("--target", default=None, help="default: the model's own translation (beam search)")
    attention.add_argument("--output", required=True, help="FILE.png (heatmaps) or FILE.html (interactive page)")
    attention.add_argument("--kind", default="cross", help="encoder | decoder | cross (encoder-decoder; default)")
    attention.add_argument("--layer", type=int, default=None, help="0-based; default: all layers (PNG)")
    attention.add_argument("--head", type=int, default=None, help="0-based; default: all heads (PNG), mean (HTML)")
    attention.add_argument("--merge_words", action="store_true", help="merge SentencePiece pieces into words")
    serve = sub.add_parser("serve", help="answer translation requests over HTTP (REST API, web page, metrics)")
    serve.add_argument("--workdir", required=True)
    serve.add_argument("--checkpoint", default="latest", help="latest | best | averaged | a step number")
    serve.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept other machines")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--backend", default="jax", help="jax | ctranslate2 (converted on start)")
    serve.add_argument("--quantize", default=None, help="ctranslate2 backend: int8 | int8_float32 | bfloat16")
    serve.add_argument("--max_batch", type=int, default=32, help="at most this many sentences per compiled batch")
    serve.add_argument("--batch_tokens", type=int, default=None,
                       help="source tokens x beam merged into one decoding call (default: decode.batch_tokens)")
    serve.add_argument("--max_wait_ms", type=float, default=10.0, help="how long a batch waits for more requests")
    serve.add_argument("--max_sentences", type=int, default=256, help="per request (more: HTTP 413)")
    serve.add_argument("--max_chars", type=int, default=100_000, help="per request (more: HTTP 413)")
    serve.add_argument("--max_queue", type=int, default=4096, help="sentences waiting (more: HTTP 503)")

    export = sub.add_parser("export", help="write a deployable model: StableHLO programs or a CTranslate2 model")
    export.add_argument("--workdir", required=True)
    export.add_argument("--checkpoint", default="latest", help="latest | best | averaged | a step number")
    export.add_argument("--format", required=True, help="stablehlo | ctranslate2")
    export.add_argument("--output", required=True, help="a new (or empty) folder")
    export.add_argument("--quantize", default=None, help="ctranslate2: int8 | int8_float32 | bfloat16; "
                                                         "stablehlo: bfloat16")
    return parser


def read_lines(path: str) -> list[str]:
    """UTF-8 lines without their newlines; '-' is stdin. Bad input is a UserError naming file and line."""
    name = "stdin" if path == "-" else path
    if path != "-" and not storage.is_file(path):
        raise UserError(f"input file {path} does not exist")
    raw = sys.stdin.buffer.read() if path == "-" else storage.read_bytes(path)
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    decoded = []
    for number, line in enumerate(lines, 1):
        try:
            decoded.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as error:
            raise UserError(f"{name} line {number} is not valid UTF-8 (byte {error.start})") from None
    return decoded


def write_lines(path: str, lines: Iterable[str]) -> None:
    text = "".join(f"{line}\n" for line in lines)
    if path in ("-", ""):
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        storage.write_atomically(path, text.encode("utf-8"))


@command
def run_train(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> None:
    from t2t_jax.configuration import load_config
    from t2t_jax.train.loop import train_and_evaluate

    train_and_evaluate(load_config(args.config, overrides), args.workdir)


def _translator(args: argparse.Namespace, overrides: list[tuple[str, str]]):  # noqa: ANN202 (lazy import)
    from t2t_jax.translate import Translator

    return Translator.from_workdirs(args.workdir, args.checkpoint, args.beam_size, args.alpha, overrides)


def _on_every_host() -> bool:
    """Joins the other hosts when launched on several (T2T_COORDINATOR, SLURM, a TPU pod); True for process 0,
    the one that writes results."""
    import jax

    from t2t_jax.distributed import initialize_from_environment

    initialize_from_environment()
    return jax.process_index() == 0


def _read_on_every_host(*paths: str) -> list[list[str]]:
    """read_lines of each path on every host; a file missing or unreadable on any host, or read differently
    by two hosts, is one error on all of them."""
    from t2t_jax.distributed import agree, gather

    try:
        contents, error = [read_lines(path) for path in paths], None
    except UserError as problem:
        contents, error = [[] for _ in paths], str(problem)
    agree(error)
    counts = gather([len(lines) for lines in contents])
    if any(count != counts[0] for count in counts):
        raise UserError(f"the hosts read different inputs (lines per process: {counts}): give every host the same")
    return contents


@command
def run_decode(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> None:
    writer = _on_every_host()
    [sources] = _read_on_every_host(args.input)
    translator = _translator(args, overrides)
    if args.nbest == 1:
        translations = translator.translate_on_all_hosts(sources)
        if writer:
            write_lines(args.output, translations)
        return
    nbest = translator.translate_on_all_hosts(sources, nbest=args.nbest)
    lines = (f"{index} ||| {text} ||| {score:.4f}" for index, group in enumerate(nbest) for text, score in group)
    if writer:
        write_lines(args.output, lines)


@command
def run_eval(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> None:
    from t2t_jax.evaluate import report

    writer = _on_every_host()
    sources, references = _read_on_every_host(args.source, args.reference)
    if len(sources) != len(references):
        raise UserError(f"{args.source} has {len(sources)} lines but {args.reference} has {len(references)}")
    translator = _translator(args, overrides)
    hypotheses = translator.translate_on_all_hosts(sources)
    if not writer:
        return
    if args.output:
        write_lines(args.output, hypotheses)
    for line in report(hypotheses, references, translator.config):  # decode.metric: BLEU or ROUGE
        print(line)


@command
def run_generate(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> None:
    from t2t_jax.generate import Generator, Search

    Search(args.max_length, args.temperature, args.top_k, args.top_p, args.beam_size).check(args.num_samples)
    prompts = [args.prompt] if args.prompt is not None else read_lines(args.input)
    generator = Generator.from_workdir(args.workdir, args.checkpoint)  # options checked before the model loads
    texts = generator.generate(
        prompts, max_length=args.max_length, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        beam_size=args.beam_size, alpha=args.alpha, num_samples=args.num_samples, seed=args.seed,
    )
    write_lines(args.output, [text for samples in texts for text in samples])


@command
def run_average(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> None:
    from t2t_jax import sharding
    from t2t_jax.configuration import load_workdir_config
    from t2t_jax.data.tokenizer import VOCAB_FILE, Tokenizer
    from t2t_jax.train import checkpoint
    from t2t_jax.train.state import abstract_train_state

    if args.last < 1:
        raise UserError(f"--last must be at least 1, got {args.last}")
    writer = _on_every_host()  # on several hosts, each restores and saves its share of the arrays
    config = load_workdir_config(args.workdir)
    vocab_size = Tokenizer.load(storage.join(args.workdir, VOCAB_FILE)).vocab_size
    target = abstract_train_state(config, vocab_size, sharding.present_mesh(config.mesh))
    step, steps = checkpoint.average_checkpoints(args.workdir, args.last, target)
    if writer:
        print(f"averaged checkpoints {steps} into {args.workdir}/averaged/{step}")


@command
def run_attention(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> None:
    from t2t_jax.visualize.export import output_format, write_attention
    from t2t_jax.visualize.maps import check_kind

    output_format(args.output)  # bad output path or kind: fail before loading the model
    check_kind(args.kind)
    if not args.source.strip():
        raise UserError("--source is empty: give a sentence to look at")
    if len(args.workdir) > 1:
        raise UserError("attention maps show one model's attention: give one --workdir, not an ensemble")
    maps = _translator(args, overrides).attention(args.source, args.target, merge_words=args.merge_words)
    write_attention(maps, args.output, args.kind, args.layer, args.head)
    print(f"wrote {args.kind} attention ({len(maps.source_tokens)} source, {len(maps.target_tokens)} target tokens) "
          f"to {args.output}")


@command
def run_serve(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> None:
    from t2t_jax.serving.app import Limits
    from t2t_jax.serving.server import check_port, load_backend, serve

    for name in ("max_batch", "max_sentences", "max_chars", "max_queue"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.max_wait_ms < 0:
        raise UserError(f"--max_wait_ms must not be negative, got {args.max_wait_ms}")
    check_port(args.host, args.port)  # before minutes of loading and compiling
    backend = load_backend(args.workdir, args.backend, args.checkpoint, args.max_batch, args.quantize, overrides)
    limits = Limits(max_sentences=args.max_sentences, max_chars=args.max_chars, max_queue=args.max_queue,
                    batch_tokens=args.batch_tokens or backend.describe()["decode"].get("batch_tokens", 4096),
                    max_wait_ms=args.max_wait_ms)
    serve(backend, args.host, args.port, limits)


@command
def run_export(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> None:
    if args.format == "stablehlo":
        from t2t_jax.serving.stablehlo import export_stablehlo as export
    elif args.format == "ctranslate2":
        from t2t_jax.serving.ctranslate2 import export_ctranslate2 as export
    else:
        raise UserError(f"--format must be stablehlo or ctranslate2, got {args.format!r}")
    from t2t_jax.configuration import is_language_model, load_workdir_config

    if is_language_model(load_workdir_config(args.workdir)):
        raise UserError(f"{args.workdir} holds a language model (model.kind=decoder_only): exports are of "
                        "translation models; generate with t2t-jax generate")
    manifest = export(args.workdir, args.output, checkpoint=args.checkpoint, quantize=args.quantize)
    print(f"exported step {manifest.get('step')} of {args.workdir} as {args.format} to {args.output}")


@command
def run_plan(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> None:
    import json

    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")  # no TPU metadata server to ask: this is not a TPU VM
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # no chip is opened: other processes may plan too
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")  # libtpu's start-up asks; a described slice has none
    import jax

    jax.config.update("jax_platforms", "cpu")  # TPU targets are described, not attached
    from t2t_jax.configuration import load_config
    from t2t_jax.plan import HEADROOM, plan, report_lines

    result = plan(load_config(args.config, overrides), args.target, search=not args.no_search)
    for line in report_lines(result):
        print(line)
    if args.json:
        storage.write_atomically(args.json, json.dumps(result, indent=1).encode())
    if not result["fits"]:
        largest = result.get("largest_batch_tokens")
        raise UserError(
            f"on {args.target} the step needs {result['peak_gib']} GiB per chip, more than {HEADROOM:.0%} of "
            f"{result['chip_memory_gib']} GiB: lower data.batch_tokens"
            + (f" (at most {largest})" if largest else "") + " or split the parameters over more chips (mesh.fsdp)"
        )


@command
def run_bench(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> None:
    import json

    from t2t_jax.bench import print_report, run_bench
    from t2t_jax.configuration import is_language_model, load_config

    for name in ("steps", "batch", "length", "vocab", "decode_batch", "decode_source_length"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    config = load_config(args.config, overrides)
    result = run_bench(
        config, vocab_size=args.vocab, batch=args.batch, length=args.length, steps=args.steps,
        decode_batch=0 if args.skip_decode or is_language_model(config) else args.decode_batch,
        decode_source_length=args.decode_source_length,
        pipeline=args.pipeline, profile_dir=args.profile,
    )
    print_report(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


def _split_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """`--config.KEY=VALUE` (or `--config.KEY VALUE`) arguments, apart from the rest."""
    rest, overrides, index = [], [], 0
    while index < len(argv):
        arg = argv[index]
        if arg.startswith("--config."):
            key, has_value, value = arg[len("--config."):].partition("=")
            if not has_value:
                if index + 1 >= len(argv):
                    raise UserError(f"{arg} needs a value: {arg}=VALUE")
                index, value = index + 1, argv[index + 1]
            overrides.append((key, value))
        else:
            rest.append(arg)
        index += 1
    return rest, overrides


DECODING_COMMANDS = ("decode", "eval", "attention", "serve")


def _check_overrides(command: str, overrides: list[tuple[str, str]]) -> None:
    """train, bench and plan take any --config.KEY=VALUE; the decoding commands only --config.decode.* (the
    model is the workdir's); average and export none."""
    if not overrides or command in ("train", "bench", "plan"):
        return
    if command in DECODING_COMMANDS:
        others = [key for key, _ in overrides if not key.startswith("decode.")]
        if others:
            raise UserError(f"--config.{others[0]}: {command} takes only --config.decode.* overrides (the model "
                            "and data settings are the workdir's)")
        return
    raise UserError(f"--config.KEY=VALUE overrides apply to train, bench and plan (and decode.* to "
                    f"{', '.join(DECODING_COMMANDS)}), not to {command}")


def _quiet_libraries() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(HideFullDiskTracebacks())
    sys.unraisablehook = drop_late_callbacks
    for noisy in ("absl", "jax", "orbax", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    _quiet_libraries()
    try:
        rest, overrides = _split_overrides(argv)
        args = _parser().parse_args(rest)
        _check_overrides(args.command, overrides)
        COMMANDS[args.command](args, overrides)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - a full disk is one line; anything else is a bug: its traceback
        full = storage_full(error)
        if full is None:
            raise
        print(f"error: {full} (the disk or a quota is full: every complete checkpoint is kept; make room and run "
              "again)", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)  # the run's own cleanup is done; orbax's writer threads would print tracebacks at exit
