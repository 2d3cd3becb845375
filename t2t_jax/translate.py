"""Translator: a trained workdir in, translations out.

    translator = Translator.from_workdir("runs/multi30k")
    translator.translate(["Ein Hund rennt."])                 # -> ["A dog is running."]
    translator.translate(["Ein Hund rennt."], nbest=2)        # -> [[("A dog is running.", -0.21), ...]]

Lines are sorted by length and decoded in batches of a few fixed shapes (lengths rounded up to a multiple
of 8, batch sizes a power of two), so that XLA compiles a handful of programs, then put back in input order.
`warm_up()` compiles every shape translate() can run (for a server); see t2t_jax.data.decode_batches.
Empty lines translate to empty lines; overlong ones are truncated (with a warning), never dropped.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from t2t_jax import sharding, storage
from t2t_jax.configuration import apply_override, load_workdir_config, model_config
from t2t_jax.data.decode_batches import BatchPlan, best_only, decode_lines, encode_sources, length_buckets
from t2t_jax.data.tokenizer import VOCAB_FILE, Tokenizer
from t2t_jax.decoding import beam_search
from t2t_jax.distributed import gather
from t2t_jax.errors import UserError
from t2t_jax.model import Transformer, TransformerConfig
from t2t_jax.model.inference import (
    decoding_config,
    ensemble_step_fn,
    init_cache,
    reorder_ensemble_cache,
    unstack_layers,
)
from t2t_jax.settings import DecodeSettings, defaults
from t2t_jax.train.state import restore_params_and_step

if TYPE_CHECKING:
    from t2t_jax.visualize.maps import AttentionMaps

log = logging.getLogger(__name__)


def restore_workdir(
    workdir: str, checkpoint: str, overrides: Sequence[tuple[str, str]]
) -> tuple[ml_collections.ConfigDict, Tokenizer, Any, int]:
    """The config (with decode overrides), vocabulary, parameters and step of a workdir's checkpoint, the
    parameters whole on every host."""
    config = load_workdir_config(workdir)
    for name, value in defaults(DecodeSettings).items():  # a workdir trained before this decode field existed
        if name not in config.decode:
            config.decode[name] = value
    for key, text in overrides:
        if not key.startswith("decode."):
            raise UserError(f"config.{key}: only the decode settings of a trained model can be changed")
        apply_override(config, key, text)
    tokenizer = Tokenizer.load(storage.join(workdir, VOCAB_FILE))
    if jax.process_count() == 1:
        params, step = restore_params_and_step(workdir, config, tokenizer.vocab_size, checkpoint,
                                               sharding.decoding_mesh(config.mesh))
    else:  # restored across all hosts' devices (a collective), then a full copy on each host
        params, step = restore_params_and_step(workdir, config, tokenizer.vocab_size, checkpoint,
                                               sharding.present_mesh(config.mesh))
        params = multihost_utils.process_allgather(params, tiled=True)  # the whole arrays
    return config, tokenizer, params, step


def per_layer(config: TransformerConfig, params: Any) -> Any:
    """Parameters as decoding runs them: a scan_layers model's stacked layers unstacked."""
    return unstack_layers(params) if config.scan_layers else params


class BeamDecoder:
    """Beam search over batches of token ids with two compiled programs per shape (encode + cache, search).

    `config` is one model's, or a sequence of configs for an ensemble, which is then called with a sequence of
    parameters (one per model): every beam step averages the models' log-probabilities."""

    def __init__(
        self, config: TransformerConfig | Sequence[TransformerConfig], beam_size: int, alpha: float,
        max_extra_length: int, mesh: Mesh | None = None,
    ) -> None:
        self.ensemble = not isinstance(config, TransformerConfig)
        self.configs = tuple(decoding_config(member) for member in (config if self.ensemble else [config]))
        self.config = self.configs[0]
        self.beam_size, self.alpha, self.max_extra_length = beam_size, alpha, max_extra_length
        # with a mesh, batches are split over its data axes; the parameters keep the shardings they come with
        self.input_sharding = None if mesh is None else sharding.batch_sharding(mesh)
        self.batch_multiple = 1 if mesh is None else sharding.batch_parallelism(mesh)
        self._prepare = jax.jit(self._prepare_fn)
        self._search = jax.jit(self._search_fn)

    def _prepare_fn(self, params: tuple[Any, ...], inputs: jax.Array) -> tuple[Any, ...]:
        max_length = inputs.shape[1] + self.max_extra_length
        caches = []
        for config, model_params in zip(self.configs, params):
            encoded = Transformer(config).apply({"params": model_params}, inputs, method=Transformer.encode)
            caches.append(init_cache(config, model_params, encoded, inputs, max_length, self.beam_size))
        return tuple(caches)

    def _search_fn(
        self, params: tuple[Any, ...], inputs: jax.Array, caches: tuple[Any, ...], extra_length: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        # extra_length (a traced scalar) is max_extra_length, or 0 to warm up: one step, same program
        max_lengths = jnp.sum(inputs > 0, axis=1) + extra_length
        result = beam_search(
            ensemble_step_fn(self.configs, params), caches, max_lengths,
            max_length=inputs.shape[1] + self.max_extra_length, beam_size=self.beam_size, alpha=self.alpha,
            eos_id=Tokenizer.EOS_ID, reorder_cache=reorder_ensemble_cache,
        )
        return result.sequences, result.scores

    def __call__(
        self, params: Any, inputs: np.ndarray, warm_up: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """inputs [batch, length] (EOS-terminated, 0-padded) -> sequences [batch, beam, max_length], scores.
        warm_up=True compiles the programs of this shape and runs one step of the search only."""
        params = tuple(params) if self.ensemble else (params,)
        inputs = jnp.asarray(inputs) if self.input_sharding is None else jax.device_put(inputs, self.input_sharding)
        extra_length = np.int32(0 if warm_up else self.max_extra_length)
        sequences, scores = self._search(params, inputs, self._prepare(params, inputs), extra_length)
        return np.asarray(sequences), np.asarray(scores)


class Translator:
    """Translates text with a trained model: SentencePiece in, beam search, SentencePiece out."""

    def __init__(
        self, config: ml_collections.ConfigDict, params: Any, tokenizer: Tokenizer,
        beam_size: int | None = None, alpha: float | None = None, mesh: Mesh | None = None,
        max_batch: int | None = None,
    ) -> None:
        """max_batch: at most this many sentences per batch (a power of two; default: as many as
        decode.batch_tokens allows)."""
        self.model_config = model_config(config, tokenizer.vocab_size)
        if self.model_config.kind == "decoder_only":
            raise UserError("this workdir holds a language model (model.kind=decoder_only): use t2t-jax generate "
                            "(or t2t_jax.Generator); decode, eval and serve translate with encoder-decoder models")
        self.max_batch, self.mesh = max_batch, mesh
        self.step: int | None = None  # the checkpoint's training step, when loaded from a workdir
        self.config, self.tokenizer = config, tokenizer
        self.decode_settings = DecodeSettings.from_config(config.decode)
        self.set_params(params)
        self.beam_size = self.decode_settings.beam_size if beam_size is None else beam_size
        if self.beam_size < 1:
            raise UserError(f"the beam size (--beam_size, decode.beam_size) must be at least 1, got {self.beam_size}")
        self.alpha = self.decode_settings.alpha if alpha is None else alpha
        self.others: list[tuple[TransformerConfig, Any]] = []  # an ensemble's other models: (config, params)
        self.decoder = self._decoder(self.beam_size, self.alpha)

    def _decoder(self, beam_size: int, alpha: float) -> BeamDecoder:
        configs = [self.model_config] + [config for config, _ in self.others]
        return BeamDecoder(configs if self.others else self.model_config, beam_size, alpha,
                           self.decode_settings.max_extra_length, self.mesh)

    def _decoding_params(self) -> Any:
        return [self.params] + [params for _, params in self.others] if self.others else self.params

    def set_params(self, params: Any) -> None:
        """Decode with these parameters from now on (as trained: stacked layers are unstacked here)."""
        self.params = per_layer(self.model_config, params)

    @classmethod
    def from_workdir(
        cls, workdir: str, checkpoint: str = "latest", beam_size: int | None = None, alpha: float | None = None,
        overrides: Sequence[tuple[str, str]] = (),
    ) -> Translator:
        """The model saved in `workdir`: checkpoint latest | best | averaged | a step number. `overrides`:
        ("decode.batch_tokens", "2048")-style changes of the decode settings."""
        config, tokenizer, params, step = restore_workdir(workdir, checkpoint, overrides)
        translator = cls(config, params, tokenizer, beam_size, alpha, sharding.decoding_mesh(config.mesh))
        translator.step = step
        return translator

    @classmethod
    def from_workdirs(
        cls, workdirs: Sequence[str], checkpoint: str = "latest", beam_size: int | None = None,
        alpha: float | None = None, overrides: Sequence[tuple[str, str]] = (),
    ) -> Translator:
        """An ensemble of the models saved in `workdirs` (each at `checkpoint`): every beam step averages their
        log-probabilities. They may differ in size but must share one vocabulary; the decode and data settings
        are the first workdir's."""
        translator = cls.from_workdir(workdirs[0], checkpoint, beam_size, alpha, overrides)
        vocabulary = storage.read_bytes(storage.join(workdirs[0], VOCAB_FILE))
        for workdir in workdirs[1:]:
            if not storage.exists(storage.join(workdir, VOCAB_FILE)):
                raise UserError(f"{workdir} holds no trained model ({VOCAB_FILE} not found)")
            if storage.read_bytes(storage.join(workdir, VOCAB_FILE)) != vocabulary:
                raise UserError(f"{workdir} was trained with another vocabulary than {workdirs[0]}: an ensemble's "
                                f"models must share one ({VOCAB_FILE} differs)")
            config, tokenizer, params, _ = restore_workdir(workdir, checkpoint, overrides)
            member = model_config(config, tokenizer.vocab_size)
            translator.others.append((member, per_layer(member, params)))
        translator.decoder = translator._decoder(translator.beam_size, translator.alpha)
        return translator

    def with_search(self, beam_size: int, alpha: float) -> Translator:
        """This translator with another beam size or length penalty: the same parameters, its own programs."""
        if beam_size < 1:
            raise UserError(f"the beam size must be at least 1, got {beam_size}")
        other = copy.copy(self)
        other.beam_size, other.alpha = beam_size, alpha
        other.decoder = self._decoder(beam_size, alpha)
        return other

    def translate_on_all_hosts(
        self, texts: Sequence[str], nbest: int = 1
    ) -> list[str] | list[list[tuple[str, float]]]:
        """`translate` with each host (process) translating one contiguous share of `texts`; every host gets all
        the translations, in input order. All processes call it together, with the same texts."""
        share = -(-len(texts) // jax.process_count())
        start = jax.process_index() * share
        mine = self.translate(texts[start:start + share], nbest) if texts[start:start + share] else []
        gathered = [result for results in gather(mine) for result in results]
        return gathered if nbest == 1 else [[(text, score) for text, score in group] for group in gathered]

    def translate(self, texts: Sequence[str], nbest: int = 1) -> list[str] | list[list[tuple[str, float]]]:
        """One translation per input (or, with nbest > 1, the n best with their scores), in input order."""
        return best_only(self.scored(texts, nbest), nbest)

    def scored(self, texts: Sequence[str], nbest: int = 1) -> list[list[tuple[str, float]]]:
        """The n best translations of each input with their scores (length-normalized log-probabilities; an
        empty input gives ("", 0.0)), in input order."""
        if not 1 <= nbest <= self.beam_size:
            raise UserError(f"nbest (--nbest) must be between 1 and the beam size {self.beam_size}, got {nbest}"
                            + (" (raise --beam_size)" if nbest > self.beam_size else ""))
        ids = encode_sources(self.tokenizer, texts, self.config.data.max_source_length)
        return decode_lines(ids, self.batch_plan(), lambda batch: self.decoder(self._decoding_params(), batch),
                            self.tokenizer.decode, nbest)

    def attention(self, source: str, target: str | None = None, merge_words: bool = False) -> AttentionMaps:
        """Attention weights of every layer and head for `source` and `target` (default: this translator's own
        beam-search translation of `source`), from one teacher-forced forward pass.

        Both sides are SentencePiece pieces ending in EOS, shown as '</s>'. The model feeds the decoder the
        target shifted right, so the decoder query at position t was given target token t-1 (the start symbol
        at t = 0) and predicts target token t: decoder and cross rows, and decoder columns, are labelled by the
        target token their position predicts. merge_words=True merges pieces into words: a word's row is the
        mean of its pieces' rows, its column the sum of its pieces' columns, so rows still sum to 1.
        Returns encoder [layers, heads, S, S], decoder [layers, heads, T, T], cross [layers, heads, T, S].
        """
        from t2t_jax.visualize.capture import attention_weights  # the visualizer only when asked for
        from t2t_jax.visualize.maps import AttentionMaps
        from t2t_jax.visualize.words import merge_words as merge_pieces_into_words

        if self.others:
            raise UserError("attention maps show one model's attention: give one --workdir, not an ensemble")
        source_ids = encode_sources(self.tokenizer, [source], self.config.data.max_source_length)[0]
        if not source_ids:
            raise UserError("the source sentence is empty: give a sentence to look at")
        if target is None:
            target = self.translate([source])[0]
        target_ids = self._encode_target(target)
        weights = attention_weights(  # each [layers, 1, heads, queries, keys]
            self.model_config.replace(scan_layers=False),  # self.params are per layer (unstacked)
            self.params, np.asarray([source_ids], np.int32), np.asarray([target_ids], np.int32),
        )
        maps = AttentionMaps(
            source_tokens=self.tokenizer.pieces(source_ids), target_tokens=self.tokenizer.pieces(target_ids),
            encoder=weights["encoder"][:, 0], decoder=weights["decoder"][:, 0], cross=weights["cross"][:, 0],
        )
        return merge_pieces_into_words(maps) if merge_words else maps

    def _encode_target(self, text: str) -> list[int]:
        """Target ids ending in EOS (just EOS for an empty target), truncated to data.max_target_length."""
        limit = self.config.data.max_target_length
        ids = self.tokenizer.encode(text) if text.strip() else []
        if len(ids) + 1 > limit:
            log.warning("the target is longer than data.max_target_length=%d tokens and was truncated", limit)
        return ids[: limit - 1] + [Tokenizer.EOS_ID]

    def batch_plan(self) -> BatchPlan:
        """How `translate` batches lines: length buckets every 8 tokens, decode.batch_tokens, max_batch."""
        return BatchPlan(length_buckets(self.config.data.max_source_length), self.decode_settings.batch_tokens,
                         self.beam_size, self.max_batch, self.decoder.batch_multiple)

    def warm_up(self) -> int:
        """Compile every shape `translate` can run (running one search step each); returns how many."""
        shapes = self.batch_plan().shapes()
        for number, (size, length) in enumerate(shapes, 1):
            log.info("warming up %d/%d: %d sentences x %d tokens", number, len(shapes), size, length)
            self.decoder(self._decoding_params(), np.zeros((size, length), np.int32), warm_up=True)
        return len(shapes)
