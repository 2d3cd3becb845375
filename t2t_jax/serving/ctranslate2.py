"""`t2t-jax export --format ctranslate2`: a trained model as a CTranslate2 model, and CTranslate2 as a decoder.

    export_ctranslate2("runs/multi30k", "exports/multi30k-ct2", quantize="int8")
    CTranslate2Translator.from_export("exports/multi30k-ct2").translate(["A dog runs."])  # -> ["Ein Hund rennt."]

An export is a folder: CTranslate2's own files (model.bin, config.json, shared_vocabulary.json, written by
CTranslate2's converter machinery), vocab.model (our SentencePiece model) and manifest.json (decoding settings).

The model maps one to one onto CTranslate2's TransformerSpec: post- or pre-norm as trained (pre: a final norm
after each stack), our sinusoidal table itself as the position encodings (sin/cos interleaved, timescales
10000^(2i/d), positions from 0), token embeddings times sqrt(d_model), shared or separate embedding and softmax
matrices, no biases on the attention projections, ReLU feed-forward with biases, our layer norm epsilon. The
decoder starts from token 0 (the pad piece, CTranslate2's decoder_start_token here) whose embedding row is used
as is (not zeroed), exactly as our shifted-right decoder input. Ids and pieces are our vocabulary's (pad 0,
EOS 1, unk 2). What CTranslate2 cannot represent (d_k != d_v) is refused with a UserError.

Length penalty. CTranslate2 4.x divides a finished hypothesis' log-probability by length ** length_penalty
(length without EOS unless return_end_token) when it finalizes; it has no GNMT form. Its beam search also stops
differently: after beam_size * patience finished hypotheses (or, with length_penalty 0, once the top beam has
finished and num_hypotheses are collected), and forces no EOS at the length limit. Ours divides by
((5 + length) / 6) ** alpha (length with EOS) and stops only when no live hypothesis can beat the beam best
finished ones. The live beams of both searches evolve the same way (top beam_size non-EOS candidates of the
top 2 * beam_size; an EOS candidate finishes a hypothesis only among the top beam_size), so `translate`
reproduces ours on top of CTranslate2: it asks for raw log-probabilities (length_penalty 0), collects
round(beam_size * patience) finished hypotheses (patience 2 by default; beam 1 runs as a beam search too,
as ours does, not CTranslate2's greedy search), scores each with GNMT's penalty, and returns the best.
The result is ours exactly when those hypotheses include every one our search finished before stopping
(later ones cannot beat ours); a larger patience makes that likelier and decoding slower. At the length
limit (source length + max_extra_length, EOS included, as ours) CTranslate2 stops one token early and the
hypotheses it ends there are given EOS and rescored exactly (CTranslate2's score_batch); those among ours that
continue a beam of rank beam_size or more at the last step are missed (this needs a run to its length limit).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from itertools import groupby
from types import ModuleType
from typing import Any

import numpy as np

from t2t_jax import storage
from t2t_jax.data.decode_batches import best_only, encode_sources
from t2t_jax.data.tokenizer import VOCAB_FILE, Tokenizer
from t2t_jax.errors import UserError
from t2t_jax.model.config import TransformerConfig
from t2t_jax.serving.manifest import read_manifest, write_manifest

FORMAT = "ctranslate2"
PATIENCE = 2.0  # finished hypotheses collected per source: round(beam_size * PATIENCE)
TINY_BIAS = 1e-9  # prefix_bias_beta > 0 makes beam size 1 a beam search (no prefix is given: no bias)
BATCH_SIZE = 32  # sources per CTranslate2 call
Params = dict[str, Any]  # nested, unboxed, per layer: params["encoder"]["layers_0"]["self_attention"]...
Hypotheses = list[tuple[list[int], float]]  # (ids without EOS, GNMT-normalized score), best first


def import_ctranslate2() -> ModuleType:
    """The ctranslate2 package, or one clear error saying how to install it."""
    try:
        import ctranslate2
    except ImportError:
        raise UserError("the ctranslate2 package is not installed: pip install 't2t-jax[serve]'") from None
    return ctranslate2


def check_quantize(quantize: str | None) -> None:
    ctranslate2 = import_ctranslate2()
    accepted = ctranslate2.specs.model_spec.ACCEPTED_MODEL_TYPES
    if quantize is not None and quantize not in accepted:
        raise UserError(f"--quantize must be one of {', '.join(accepted)} (CTranslate2's names), got {quantize!r}")


def check_representable(config: TransformerConfig) -> None:
    """UserError for a model CTranslate2's Transformer cannot compute."""
    if config.key_size != config.value_size:
        raise UserError(f"CTranslate2 needs equal query-key and value sizes per head; this model has d_k "
                        f"{config.key_size} and d_v {config.value_size}: export it with --format stablehlo")
    if config.position_encoding == "relative":
        raise UserError("this export does not map relative position representations to CTranslate2's yet: "
                        "export the model with --format stablehlo")


def check_output(output: str) -> None:
    """Never overwrite: `output` must not exist, or be an empty folder."""
    if storage.exists(output) and (storage.is_file(output) or any(storage.path(output).iterdir())):
        raise UserError(f"{output} already exists and is not empty: choose a new --output (nothing was overwritten)")


# ---- the spec -------------------------------------------------------------------------------------------------

def _array(value: Any) -> np.ndarray:
    """A float32 copy of its own: CTranslate2's quantization rewrites arrays in place."""
    return np.array(value, dtype=np.float32, order="C", copy=True)


def _projection(kernel: Any) -> np.ndarray:  # [d_model, heads, size] -> CTranslate2 weight [heads * size, d_model]
    kernel = np.asarray(kernel)
    return _array(kernel.reshape(kernel.shape[0], -1).T)


def _set_linear(spec: Any, kernel: Any, bias: Any = None) -> None:  # flax kernel [in, out] -> weight [out, in]
    spec.weight = _array(np.asarray(kernel).T)
    if bias is not None:
        spec.bias = _array(bias)


def _set_norm(spec: Any, norm: Params) -> None:
    spec.gamma, spec.beta = _array(norm["scale"]), _array(norm["bias"])


def _set_attention(spec: Any, attention: Params, norm: Params, self_attention: bool) -> None:
    """Self-attention: one fused [q; k; v] projection; encoder-decoder attention: q, then fused [k; v]."""
    query, key, value = (_projection(attention[name]["kernel"]) for name in ("query", "key", "value"))
    if self_attention:
        spec.linear[0].weight = np.concatenate([query, key, value])  # [3 * heads * size, d_model]
    else:
        spec.linear[0].weight = query
        spec.linear[1].weight = np.concatenate([key, value])  # [2 * heads * size, d_model]
    out = np.asarray(attention["out"])  # [heads, value_size, d_model]
    spec.linear[-1].weight = _array(out.reshape(-1, out.shape[-1]).T)  # [d_model, heads * size]
    _set_norm(spec.layer_norm, norm)


def _set_feed_forward(spec: Any, ffn: Params, norm: Params) -> None:
    _set_linear(spec.linear_0, ffn["wi"]["kernel"], ffn["wi"]["bias"])
    _set_linear(spec.linear_1, ffn["wo"]["kernel"], ffn["wo"]["bias"])
    _set_norm(spec.layer_norm, norm)


def _set_layer(spec: Any, layer: Params, cross_attention: bool) -> None:
    _set_attention(spec.self_attention, layer["self_attention"], layer["self_attention_residual"]["norm"], True)
    if cross_attention:
        _set_attention(spec.attention, layer["cross_attention"], layer["cross_attention_residual"]["norm"], False)
    _set_feed_forward(spec.ffn, layer["feed_forward"], layer["feed_forward_residual"]["norm"])


def position_table(config: TransformerConfig, stack: Params, positions: int) -> np.ndarray:
    """[positions, d_model]: our sinusoidal encodings of 0..positions-1, or the learned table."""
    if config.position_encoding == "learned":
        return _array(stack["position_encoding"]["embedding"])
    from t2t_jax.model.layers import sinusoidal_encoding

    return _array(sinusoidal_encoding(np.arange(positions), config.d_model))


def _embeddings(config: TransformerConfig, params: Params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source embedding, target embedding, softmax weight), each [vocab, d_model]."""
    names = {"all": ("shared", "shared", "shared"), "target": ("source", "target", "target")}
    source, target, output = names.get(config.share_embeddings, ("source", "target", None))
    tables = [_array(params[f"{name}_embedding"]["embedding"]) for name in (source, target, output) if name]
    if output is None:  # a separate softmax matrix [d_model, vocab]
        tables.append(_array(np.asarray(params["decoder"]["logits"]["kernel"]).T))
    return tables[0], tables[1], tables[2]  # each its own copy (equal ones are stored once, as aliases)


def _set_stack(spec: Any, config: TransformerConfig, stack: Params, positions: int, cross_attention: bool) -> None:
    spec.scale_embeddings = bool(config.scale_embeddings)  # True: times sqrt(d_model)
    spec.position_encodings.encodings = position_table(config, stack, positions)
    for index, layer in enumerate(spec.layer):
        _set_layer(layer, stack[f"layers_{index}"], cross_attention)
    if config.norm_placement == "pre":
        _set_norm(spec.layer_norm, stack["final_norm"])


def transformer_spec(config: TransformerConfig, params: Params, pieces: Sequence[str], positions: int) -> Any:
    """A filled ctranslate2.specs.TransformerSpec of our model; `pieces` are the vocabulary's pieces by id and
    `positions` the number of position encodings (the longest source or output + 1)."""
    ctranslate2 = import_ctranslate2()
    check_representable(config)
    specs = ctranslate2.specs
    head_dim = None if config.key_size * config.num_heads == config.d_model else config.key_size
    stacks = dict(num_heads=config.num_heads, pre_norm=config.norm_placement == "pre", head_dim=head_dim)
    encoder = specs.TransformerEncoderSpec(config.num_encoder_layers, **stacks)
    decoder = specs.TransformerDecoderSpec(config.num_decoder_layers, **stacks)
    source, target, softmax = _embeddings(config, params)
    encoder.embeddings[0].weight, decoder.embeddings.weight, decoder.projection.weight = source, target, softmax
    _set_stack(encoder, config, params["encoder"], positions, cross_attention=False)
    _set_stack(decoder, config, params["decoder"], positions, cross_attention=True)
    spec = specs.TransformerSpec(encoder, decoder)
    spec.config.layer_norm_epsilon = config.layer_norm_epsilon
    spec.config.unk_token, spec.config.eos_token = pieces[Tokenizer.UNK_ID], pieces[Tokenizer.EOS_ID]
    spec.config.bos_token = spec.config.decoder_start_token = pieces[Tokenizer.PAD_ID]  # our start symbol: id 0
    spec.register_source_vocabulary(list(pieces))
    spec.register_target_vocabulary(list(pieces))
    return spec


def save_spec(spec: Any, folder: str, quantize: str | None = None) -> None:
    """CTranslate2's converter machinery (validate, optimize/quantize, save) writes `spec` to the new local
    `folder`."""
    ctranslate2 = import_ctranslate2()

    class SpecConverter(ctranslate2.converters.Converter):
        def _load(self) -> Any:
            return spec

    SpecConverter().convert(folder, quantization=quantize)


# ---- export ---------------------------------------------------------------------------------------------------

def write_export(
    output: str, config: TransformerConfig, params: Params, vocabulary_file: str, *, step: int, beam_size: int,
    alpha: float, max_extra_length: int, max_source_length: int, quantize: str | None = None, **fields: Any,
) -> dict[str, Any]:
    """Export per-layer float parameters `params` of a model of `config` to `output` (local or gs://); returns
    the manifest (with `fields` added, e.g. source_lang)."""
    check_quantize(quantize)
    check_output(output)
    tokenizer = Tokenizer.load(vocabulary_file)
    pieces = tokenizer.pieces(range(tokenizer.vocab_size))
    positions = max(config.max_length, max_source_length + max_extra_length + 1)
    spec = transformer_spec(config, params, pieces, positions)
    with tempfile.TemporaryDirectory() as scratch:
        model = os.path.join(scratch, "model")
        save_spec(spec, model, quantize)
        storage.upload_folder(model, storage.path(output))
    storage.write_atomically(storage.join(output, VOCAB_FILE), storage.read_bytes(vocabulary_file))
    return write_manifest(  # last: a folder without a manifest is no export
        output, FORMAT, step=step, vocabulary=VOCAB_FILE, beam_size=beam_size, alpha=alpha,
        max_extra_length=max_extra_length, max_source_length=max_source_length, quantization=quantize, **fields,
    )


def restore_cpu_params(workdir: str, config: Any, vocab_size: int, checkpoint: str) -> tuple[Params, int]:
    """Checkpoint `checkpoint` of `workdir` as per-layer float32 numpy arrays on the host, and its step."""
    import jax
    from flax import linen as nn

    from t2t_jax import sharding
    from t2t_jax.model.inference import unstack_layers
    from t2t_jax.train.state import restore_params_and_step

    mesh = sharding.present_mesh(config.mesh, jax.local_devices(backend="cpu"))
    params, step = restore_params_and_step(workdir, config, vocab_size, checkpoint, mesh)
    params = unstack_layers(params) if config.model.scan_layers else nn.unbox(params)
    return jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), jax.device_get(params)), int(step)


def export_ctranslate2(
    workdir: str, output: str, checkpoint: str = "latest", quantize: str | None = None
) -> dict[str, Any]:
    """Write checkpoint `checkpoint` (latest | best | averaged | STEP) of `workdir` as a CTranslate2 model to
    `output`, weights quantized to `quantize` (None: float32; int8, int8_float32, int16, float16, bfloat16, ...
    as CTranslate2 names them). Refuses an `output` that exists and is not empty. Returns the manifest."""
    from t2t_jax.configuration import load_workdir_config, model_config

    check_quantize(quantize)
    check_output(output)
    config = load_workdir_config(workdir)
    vocabulary_file = storage.join(workdir, VOCAB_FILE)
    tokenizer = Tokenizer.load(vocabulary_file)
    model_cfg = model_config(config, tokenizer.vocab_size)
    check_representable(model_cfg)  # before the restore
    params, step = restore_cpu_params(workdir, config, tokenizer.vocab_size, checkpoint)
    decode = config.decode
    return write_export(
        output, model_cfg, params, vocabulary_file, step=step, beam_size=decode.beam_size, alpha=decode.alpha,
        max_extra_length=decode.max_extra_length, max_source_length=config.data.max_source_length,
        quantize=quantize, source_lang=config.data.source_lang, target_lang=config.data.target_lang,
    )


# ---- decoding -------------------------------------------------------------------------------------------------

def gnmt_score(log_prob: float, length: int, alpha: float) -> float:
    """Our beam search's score: log-probability / ((5 + length) / 6) ** alpha, length with EOS, in float32."""
    penalty = np.float32(((5.0 + np.float32(length)) / 6.0) ** np.float32(alpha))
    return float(np.float32(log_prob) / penalty)


class CTranslate2Translator:
    """Translates with an exported model on CTranslate2: our tokenization, limits and length penalty."""

    def __init__(
        self, translator: Any, tokenizer: Tokenizer, manifest: dict[str, Any], patience: float = PATIENCE
    ) -> None:
        self.translator, self.tokenizer, self.manifest = translator, tokenizer, manifest
        self.beam_size, self.alpha = int(manifest["beam_size"]), float(manifest["alpha"])
        self.max_extra_length = int(manifest["max_extra_length"])
        self.max_source_length = int(manifest["max_source_length"])
        self.patience = patience
        self.pieces = tokenizer.pieces(range(tokenizer.vocab_size))
        self.ids = {piece: index for index, piece in enumerate(self.pieces)}

    @classmethod
    def from_export(
        cls, path: str, device: str = "cpu", compute_type: str = "default", inter_threads: int = 1,
        intra_threads: int = 0,
    ) -> CTranslate2Translator:
        """The model exported to `path` (local or gs://) on `device` (cpu | cuda)."""
        ctranslate2 = import_ctranslate2()
        manifest = read_manifest(path)
        if manifest["format"] != FORMAT:
            raise UserError(f"{path} is a {manifest['format']} export, not a {FORMAT} one")
        with tempfile.TemporaryDirectory() as scratch:
            local = path
            if storage.is_remote(path):
                local = os.path.join(scratch, "model")
                os.makedirs(local)
                storage.download_folder(storage.path(path), local)
            tokenizer = Tokenizer.load(os.path.join(local, manifest["vocabulary"]))
            translator = ctranslate2.Translator(  # reads the model into memory: the folder may go afterwards
                local, device=device, compute_type=compute_type, inter_threads=inter_threads,
                intra_threads=intra_threads,
            )
        return cls(translator, tokenizer, manifest)

    @classmethod
    def from_workdir(
        cls, workdir: str, checkpoint: str = "latest", quantize: str | None = None
    ) -> CTranslate2Translator:
        """The model of `workdir`, converted into a temporary folder (deleted once loaded)."""
        with tempfile.TemporaryDirectory() as scratch:
            folder = os.path.join(scratch, "export")
            export_ctranslate2(workdir, folder, checkpoint, quantize)
            return cls.from_export(folder)

    def translate(
        self, texts: Sequence[str], nbest: int = 1, beam_size: int | None = None, alpha: float | None = None
    ) -> list[str] | list[list[tuple[str, float]]]:
        """One translation per input (or, with nbest > 1, the n best with their scores), in input order."""
        return best_only(self.scored(texts, nbest, beam_size, alpha), nbest)

    def scored(
        self, texts: Sequence[str], nbest: int = 1, beam_size: int | None = None, alpha: float | None = None
    ) -> list[list[tuple[str, float]]]:
        """The n best translations of each input with their scores (GNMT-normalized log-probabilities; an empty
        input gives ("", 0.0)), in input order."""
        beam = self.beam_size if beam_size is None else beam_size
        alpha = self.alpha if alpha is None else alpha
        if beam < 1:
            raise UserError(f"the beam size must be at least 1, got {beam}")
        if not 1 <= nbest <= beam:
            raise UserError(f"nbest must be between 1 and the beam size {beam}, got {nbest}")
        results: list[list[tuple[str, float]]] = [[("", 0.0)] * nbest for _ in texts]
        for index, hypotheses in self.search(self.encode(texts), beam, alpha).items():
            results[index] = [(self.tokenizer.decode(ids), score) for ids, score in hypotheses[:nbest]]
        return results

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids ending in EOS, truncated to max_source_length (with a warning) as ours; [] for an empty line."""
        return encode_sources(self.tokenizer, texts, self.max_source_length)

    def search(self, sources: list[list[int]], beam_size: int, alpha: float) -> dict[int, Hypotheses]:
        """Input index -> its hypotheses, best first, for every non-empty source (ids ending in EOS). Sources of
        one length share a call, since CTranslate2 has one length limit per call."""
        order = sorted((i for i in range(len(sources)) if sources[i]), key=lambda i: len(sources[i]))
        found: dict[int, Hypotheses] = {}
        for _, same_length in groupby(order, key=lambda i: len(sources[i])):
            indices = list(same_length)
            for start in range(0, len(indices), BATCH_SIZE):
                chunk = indices[start:start + BATCH_SIZE]
                found.update(zip(chunk, self.search_batch([sources[i] for i in chunk], beam_size, alpha)))
        return found

    def search_batch(self, sources: list[list[int]], beam_size: int, alpha: float) -> list[Hypotheses]:
        """Hypotheses of sources of one length: CTranslate2's beam search, then our length penalty."""
        max_length = len(sources[0]) + self.max_extra_length  # ours: EOS included
        pieces = [[self.pieces[i] for i in ids] for ids in sources]
        collect = max(1, round(beam_size * self.patience))
        results = self.translator.translate_batch(
            pieces, beam_size=beam_size, patience=self.patience, num_hypotheses=collect, length_penalty=0.0,
            max_decoding_length=max_length - 1, min_decoding_length=0, return_scores=True, return_end_token=True,
            max_input_length=0, prefix_bias_beta=TINY_BIAS if beam_size == 1 else 0.0,
        )
        return [self._rescore(source, result, alpha) for source, result in zip(pieces, results)]

    def _rescore(self, source: list[str], result: Any, alpha: float) -> Hypotheses:
        """(ids, GNMT score) best first; hypotheses cut at the length limit get EOS and their exact log-prob."""
        cut = [tokens for tokens in result.hypotheses if tokens[-1] != self.pieces[Tokenizer.EOS_ID]]
        exact = iter(self.translator.score_batch([source] * len(cut), cut, max_input_length=0) if cut else [])
        scored = []
        for tokens, log_prob in zip(result.hypotheses, result.scores):
            ids = [self.ids[piece] for piece in tokens]
            if ids[-1] != Tokenizer.EOS_ID:
                log_prob = float(np.sum(next(exact).log_probs, dtype=np.float32))  # with the EOS ours appends
                ids = ids + [Tokenizer.EOS_ID]
            scored.append((ids[:-1], gnmt_score(log_prob, len(ids), alpha)))
        return sorted(scored, key=lambda pair: -pair[1])
