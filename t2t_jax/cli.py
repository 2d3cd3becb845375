"""The `t2t-jax` command: train, decode, eval, average.

Mistakes a user can make end with one line on stderr ("error: ...") and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable

from t2t_jax.errors import UserError

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
        p.add_argument("--workdir", required=True)
        p.add_argument("--checkpoint", default="latest", help="latest | best | averaged | a step number")
        p.add_argument("--beam_size", type=int, default=None, help="default: the workdir's decode.beam_size")
        p.add_argument("--alpha", type=float, default=None, help="length penalty; default: decode.alpha")

    decode = sub.add_parser("decode", help="translate lines (stdin/stdout by default)")
    decoding_options(decode)
    decode.add_argument("--input", default="-")
    decode.add_argument("--output", default="-")
    decode.add_argument("--nbest", type=int, default=1, help="n > 1: 'INDEX ||| TRANSLATION ||| SCORE' lines")

    evaluate = sub.add_parser("eval", help="translate a file and score it with sacreBLEU and chrF")
    decoding_options(evaluate)
    evaluate.add_argument("--source", required=True)
    evaluate.add_argument("--reference", required=True)
    evaluate.add_argument("--output", default="", help="also write the translations here")

    average = sub.add_parser("average", help="average the last N checkpoints into workdir/averaged")
    average.add_argument("--workdir", required=True)
    average.add_argument("--last", type=int, required=True)
    return parser


def read_lines(path: str) -> list[str]:
    """UTF-8 lines without their newlines; '-' is stdin. Bad input is a UserError naming file and line."""
    name = "stdin" if path == "-" else path
    if path != "-" and not os.path.isfile(path):
        raise UserError(f"input file {path} does not exist")
    raw = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
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
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


@command
def run_train(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> None:
    from t2t_jax.configuration import load_config
    from t2t_jax.train.loop import train_and_evaluate

    train_and_evaluate(load_config(args.config, overrides), args.workdir)


def _translator(args: argparse.Namespace):  # noqa: ANN202 (lazy import of the type)
    from t2t_jax.translate import Translator

    return Translator.from_workdir(args.workdir, args.checkpoint, args.beam_size, args.alpha)


@command
def run_decode(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> None:
    translator = _translator(args)
    sources = read_lines(args.input)
    if args.nbest == 1:
        write_lines(args.output, translator.translate(sources))
        return
    nbest = translator.translate(sources, nbest=args.nbest)
    lines = (f"{index} ||| {text} ||| {score:.4f}" for index, group in enumerate(nbest) for text, score in group)
    write_lines(args.output, lines)


@command
def run_eval(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> None:
    from t2t_jax.evaluate import score

    sources, references = read_lines(args.source), read_lines(args.reference)
    if len(sources) != len(references):
        raise UserError(f"{args.source} has {len(sources)} lines but {args.reference} has {len(references)}")
    translator = _translator(args)
    hypotheses = translator.translate(sources)
    if args.output:
        write_lines(args.output, hypotheses)
    for line in score(hypotheses, references, translator.config.data.target_lang).lines():
        print(line)


@command
def run_average(args: argparse.Namespace, overrides: list[tuple[str, str]]) -> None:
    from t2t_jax.configuration import load_workdir_config
    from t2t_jax.data.tokenizer import Tokenizer
    from t2t_jax.train import checkpoint, sharding
    from t2t_jax.train.state import train_setup

    if args.last < 1:
        raise UserError(f"--last must be at least 1, got {args.last}")
    config = load_workdir_config(args.workdir)
    vocab_size = Tokenizer.load(os.path.join(args.workdir, "vocab.model")).vocab_size
    target = sharding.abstract_state(train_setup(config, vocab_size)[2], sharding.make_mesh(config.mesh))
    step, steps = checkpoint.average_checkpoints(args.workdir, args.last, target)
    print(f"averaged checkpoints {steps} into {args.workdir}/averaged/{step}")


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


def _quiet_libraries() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    for noisy in ("absl", "jax", "orbax", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    _quiet_libraries()
    try:
        rest, overrides = _split_overrides(argv)
        args = _parser().parse_args(rest)
        if overrides and args.command != "train":
            raise UserError("--config.KEY=VALUE overrides apply to train only; decode reads the workdir's config")
        COMMANDS[args.command](args, overrides)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
