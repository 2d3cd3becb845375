"""`t2t-jax export --format stablehlo`: a trained model as serialized `jax.export` programs, run without Flax.

    export_stablehlo("runs/multi30k", "exports/multi30k")          # restore, trace, serialize, write
    load_stablehlo("exports/multi30k").translate(["Ein Hund rennt."])  # -> ["A dog is running."]

An export is a folder:

    manifest.json              decoding settings, buckets, platforms, dtypes (t2t_jax.serving.manifest)
    vocab.model                the SentencePiece model
    params.npz                 the parameters, one array per "encoder/layers_0/.../kernel" key (bfloat16 ones are
                               stored as their uint16 bits: .npy has no bfloat16)
    programs/length_N.jaxexport  per source-length bucket N: encode + beam search of inputs [batch, N], the
                               batch size symbolic, for every platform named (e.g. cpu and cuda) in one program

The parameters are an input of the programs, not constants baked into them: the programs stay small (one
per bucket, so baked weights would be copied into each), a fine-tuned or averaged checkpoint can replace
params.npz without exporting again, and large models stay clear of the 2 GiB limit of a serialized module.

Loading needs jax, numpy and sentencepiece only: this module imports Flax and the model lazily, in the
export. Lines are batched as `Translator` batches them (sorted by length, padded to their bucket, batch sizes
a power of two within decode.batch_tokens), so both compute the same translations.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from t2t_jax import storage
from t2t_jax.data.decode_batches import (
    LENGTH_MULTIPLE,
    BatchPlan,
    best_only,
    decode_lines,
    encode_sources,
    round_up,
)
from t2t_jax.data.tokenizer import VOCAB_FILE, Tokenizer
from t2t_jax.errors import UserError
from t2t_jax.serving.manifest import read_manifest, write_manifest

log = logging.getLogger(__name__)
PARAMS_FILE = "params.npz"
PROGRAMS = "programs"
GEOMETRIC_FROM = 256  # buckets every 8 tokens up to here (at most 32 programs), then doubling
QUANTIZE = ("bfloat16",)
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
Params = dict[str, np.ndarray]  # flat: "decoder/layers_0/attention/query/kernel" -> array


def bucket_lengths(max_source_length: int) -> list[int]:
    """The padded source lengths exported: multiples of 8 up to 256, then doublings, the last one covering
    max_source_length (truncated inputs are at most that long)."""
    top = round_up(max_source_length, LENGTH_MULTIPLE)
    buckets = list(range(LENGTH_MULTIPLE, min(top, GEOMETRIC_FROM) + 1, LENGTH_MULTIPLE))
    while buckets[-1] < top:
        buckets.append(min(buckets[-1] * 2, top))
    return buckets


def program_file(path: str, length: int) -> str:
    return storage.join(path, PROGRAMS, f"length_{length}.jaxexport")


# ---------------------------------------------------------------------------------------------------- export


def export_stablehlo(
    workdir: str,
    output: str,
    checkpoint: str = "latest",
    platforms: Sequence[str] = ("cpu", "cuda"),
    quantize: str | None = None,
) -> dict[str, Any]:
    """Exports checkpoint `checkpoint` (latest | best | averaged | STEP) of `workdir` to the new folder
    `output`; quantize="bfloat16" stores and computes in bfloat16. Returns the manifest written."""
    platforms = _check_arguments(output, platforms, quantize)
    from t2t_jax.configuration import load_workdir_config

    config = load_workdir_config(workdir)
    tokenizer = Tokenizer.load(storage.join(workdir, VOCAB_FILE))
    params, step = _restore(workdir, config, tokenizer.vocab_size, checkpoint)
    dtype = quantize or _compute_dtype_name(config.model.dtype)
    params = {name: value.astype(jnp.dtype(quantize)) if quantize else value for name, value in params.items()}
    translate = _translate_fn(config, tokenizer.vocab_size, dtype)
    buckets = bucket_lengths(config.data.max_source_length)
    for length in buckets:
        blob = _export_program(translate, params, length, platforms)
        storage.write_atomically(program_file(output, length), blob)
    _save_params(params, storage.join(output, PARAMS_FILE))
    storage.write_atomically(storage.join(output, VOCAB_FILE), storage.read_bytes(tokenizer.path))
    decode = config.decode
    return write_manifest(  # last: a folder without a manifest is not an export
        output, "stablehlo", step=step, vocabulary=VOCAB_FILE, beam_size=decode.beam_size, alpha=decode.alpha,
        max_extra_length=decode.max_extra_length, max_source_length=config.data.max_source_length,
        batch_tokens=decode.batch_tokens, buckets=buckets, bucketing=_bucketing(buckets), platforms=platforms,
        dtype=dtype, param_dtype=_dtype_name(params), params=PARAMS_FILE, checkpoint=checkpoint,
        source_lang=config.data.source_lang, target_lang=config.data.target_lang,
    )


def _check_arguments(output: str, platforms: Sequence[str], quantize: str | None) -> list[str]:
    if quantize is not None and quantize not in QUANTIZE:
        raise UserError(f"--quantize {quantize!r} is not supported for stablehlo: use {', '.join(QUANTIZE)} or none")
    unknown = [platform for platform in platforms if platform not in PLATFORMS]
    if unknown or not platforms:
        named = ", ".join(unknown) or "(none given)"
        raise UserError(f"unknown platform(s) {named}: choose from {', '.join(PLATFORMS)}")
    target = storage.path(output)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"{output} already exists and is not empty: choose a new folder for the export")
    return list(dict.fromkeys(platforms))


def _compute_dtype_name(name: str) -> str:
    """model.dtype as exported: "auto" (bfloat16 on accelerators when trained) is float32 here, since one
    program serves every platform; --quantize bfloat16 asks for bfloat16."""
    return "float32" if name == "auto" else str(jnp.dtype(name))


def _dtype_name(params: Params) -> str:
    return str(next(iter(params.values())).dtype)


def _bucketing(buckets: list[int]) -> str:
    if buckets[-1] <= GEOMETRIC_FROM:
        return f"multiples of {LENGTH_MULTIPLE}"
    return f"multiples of {LENGTH_MULTIPLE} up to {GEOMETRIC_FROM}, then doubling (longer lines padded more)"


def _restore(workdir: str, config: Any, vocab_size: int, which: str) -> tuple[Params, int]:
    """The checkpoint's parameters as flat host arrays (per-layer, unboxed), and its step."""
    from flax import linen as nn
    from flax import traverse_util

    from t2t_jax import sharding
    from t2t_jax.model.inference import unstack_layers
    from t2t_jax.train.state import restore_params_and_step

    if jax.process_count() > 1:
        raise UserError("export runs on one host: run `t2t-jax export` as a single process")
    params, step = restore_params_and_step(workdir, config, vocab_size, which, sharding.decoding_mesh(config.mesh))
    params = unstack_layers(params) if config.model.scan_layers else nn.unbox(params)
    flat = traverse_util.flatten_dict(jax.device_get(params), sep="/")
    return {name: np.asarray(value) for name, value in flat.items()}, int(step)


def _translate_fn(config: Any, vocab_size: int, dtype: str) -> Callable[[Params, jax.Array], tuple[jax.Array, ...]]:
    """translate(params, inputs [batch, length]) -> (sequences [batch, beam, length + max_extra_length] int32,
    scores [batch, beam] float32): BeamDecoder's computation (encode + cache, then search) as one program."""
    from flax import traverse_util

    from t2t_jax.configuration import model_config
    from t2t_jax.decoding import beam_search
    from t2t_jax.model import Transformer
    from t2t_jax.model.cache import reorder_cache
    from t2t_jax.model.inference import decoding_config, init_cache, step_fn

    model = decoding_config(model_config(config, vocab_size).replace(dtype=jnp.dtype(dtype)))
    beam_size, alpha, extra = config.decode.beam_size, config.decode.alpha, config.decode.max_extra_length

    def translate(params: Params, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        tree = traverse_util.unflatten_dict(params, sep="/")
        max_length = inputs.shape[1] + extra  # the static buffer; each line stops at its own length + extra
        encoded = Transformer(model).apply({"params": tree}, inputs, method=Transformer.encode)  # [B, S, D]
        cache = init_cache(model, tree, encoded, inputs, max_length, beam_size)
        result = beam_search(
            step_fn(model, tree), cache, jnp.sum(inputs > 0, axis=1) + extra, max_length=max_length,
            beam_size=beam_size, alpha=alpha, eos_id=Tokenizer.EOS_ID, reorder_cache=reorder_cache,
        )
        return result.sequences, result.scores

    return translate


def _export_program(translate: Callable, params: Params, length: int, platforms: Sequence[str]) -> bytes:
    """The serialized program of inputs int32 [batch, length], batch symbolic (any size >= 1)."""
    (batch,) = export.symbolic_shape("batch")  # a dimension variable is >= 1 already: no constraint needed
    param_specs = {name: jax.ShapeDtypeStruct(value.shape, value.dtype) for name, value in params.items()}
    exported = export.export(jax.jit(translate), platforms=platforms)(
        param_specs, jax.ShapeDtypeStruct((batch, length), jnp.int32)
    )
    return bytes(exported.serialize())


def _save_params(params: Params, path: str) -> None:
    """params.npz (uncompressed: one object to upload, read at memory speed); bfloat16 arrays as their uint16
    bits, since .npy files cannot name bfloat16."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: _storable(value) for name, value in params.items()})
    storage.write_atomically(path, buffer.getvalue())


def _storable(value: np.ndarray) -> np.ndarray:
    return value.view(np.uint16) if value.dtype == jnp.bfloat16 else value


# ------------------------------------------------------------------------------------------------------ load


def load_stablehlo(path: str) -> ExportedTranslator:
    """The export in `path` (written by export_stablehlo), ready to translate on this machine's platform."""
    manifest = read_manifest(path)
    if manifest["format"] != "stablehlo":
        raise UserError(f"{path} holds a {manifest['format']} export, not a stablehlo one")
    platform = export.default_export_platform()
    if platform not in manifest["platforms"]:
        raise UserError(f"{path} was exported for {', '.join(manifest['platforms'])}, not for {platform}: "
                        f"export it again with this platform")
    programs = {length: export.deserialize(bytearray(storage.read_bytes(program_file(path, length))))
                for length in manifest["buckets"]}
    params = _load_params(storage.join(path, manifest["params"]))
    tokenizer = Tokenizer.load(storage.join(path, manifest["vocabulary"]))
    return ExportedTranslator(manifest, programs, params, tokenizer)


def _load_params(path: str) -> Params:
    """params.npz as written by _save_params: uint16 arrays are bfloat16 bits (no parameter is an integer)."""
    with np.load(io.BytesIO(storage.read_bytes(path))) as arrays:
        return {name: _restored(arrays[name]) for name in arrays.files}


def _restored(value: np.ndarray) -> np.ndarray:
    return value.view(jnp.bfloat16) if value.dtype == np.uint16 else value


class ExportedTranslator:
    """Translates text with exported programs: SentencePiece in, beam search, SentencePiece out."""

    def __init__(
        self, manifest: dict[str, Any], programs: dict[int, export.Exported], params: Params, tokenizer: Tokenizer
    ) -> None:
        self.manifest, self.tokenizer = manifest, tokenizer
        self.beam_size: int = manifest["beam_size"]
        self.step: int = manifest["step"]
        self.buckets = sorted(programs)
        self._programs = {length: jax.jit(program.call) for length, program in programs.items()}
        self._params = jax.device_put(params)  # once, not per batch

    def translate(self, texts: Sequence[str], nbest: int = 1) -> list[str] | list[list[tuple[str, float]]]:
        """One translation per input (or, with nbest > 1, the n best with their scores), in input order."""
        return best_only(self.scored(texts, nbest), nbest)

    def scored(self, texts: Sequence[str], nbest: int = 1) -> list[list[tuple[str, float]]]:
        """The n best translations of each input with their scores (length-normalized log-probabilities; an
        empty input gives ("", 0.0)), in input order."""
        if not 1 <= nbest <= self.beam_size:
            raise UserError(f"nbest must be between 1 and the exported beam size {self.beam_size}, got {nbest}")
        ids = encode_sources(self.tokenizer, texts, self.manifest["max_source_length"])
        plan = BatchPlan(self.buckets, self.manifest["batch_tokens"], self.beam_size)
        return decode_lines(ids, plan, lambda batch: self._programs[batch.shape[1]](self._params, batch),
                            self.tokenizer.decode, nbest)
