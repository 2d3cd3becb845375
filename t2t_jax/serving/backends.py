"""What the server decodes with: our JAX `Translator`, or CTranslate2 on a converted copy of the same model.

Both answer `translate(texts, nbest, beam_size, alpha) -> [[(text, score), ...] per text]` for a batch of
sentences; the server calls them from one worker thread at a time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

from t2t_jax.errors import UserError
from t2t_jax.visualize.maps import AttentionMaps

Hypotheses = list[list[tuple[str, float]]]
MAX_BEAM_SIZE = 16


class Backend(Protocol):
    name: str
    beam_size: int
    alpha: float

    def translate(self, texts: Sequence[str], nbest: int, beam_size: int, alpha: float) -> Hypotheses: ...

    def warm_up(self) -> int: ...

    def describe(self) -> dict[str, Any]: ...

    def count_tokens(self, text: str) -> int: ...


def check_search(beam_size: int, alpha: float, nbest: int) -> None:
    """UserError unless 1 <= nbest <= beam_size <= MAX_BEAM_SIZE and 0 <= alpha <= 10."""
    if not 1 <= beam_size <= MAX_BEAM_SIZE:
        raise UserError(f"beam_size must be between 1 and {MAX_BEAM_SIZE}, got {beam_size}")
    if not 0.0 <= alpha <= 10.0:
        raise UserError(f"alpha must be between 0 and 10, got {alpha}")
    if not 1 <= nbest <= beam_size:
        raise UserError(f"n_best must be between 1 and the beam size {beam_size}, got {nbest}")


class JaxBackend:
    """Our own beam search. The workdir's beam size and alpha are compiled for every batch shape before the
    server opens; other values a request asks for compile on first use (a few are kept)."""

    name = "jax"

    def __init__(self, translator: Any, workdir: str, keep_searches: int = 4) -> None:
        self.translator, self.workdir = translator, workdir
        self.beam_size, self.alpha = translator.beam_size, translator.alpha
        self._searches: OrderedDict[tuple[int, float], Any] = OrderedDict({(self.beam_size, self.alpha): translator})
        self._keep = keep_searches

    @classmethod
    def from_workdir(
        cls, workdir: str, checkpoint: str = "latest", max_batch: int | None = None,
        overrides: Sequence[tuple[str, str]] = (),
    ) -> JaxBackend:
        from t2t_jax.translate import Translator

        translator = Translator.from_workdir(workdir, checkpoint, overrides=overrides)
        translator.max_batch = max_batch
        return cls(translator, workdir)

    def _translator(self, beam_size: int, alpha: float) -> Any:
        key = (beam_size, alpha)
        if key not in self._searches:
            self._searches[key] = self.translator.with_search(beam_size, alpha)
            while len(self._searches) > self._keep:  # the oldest other search goes; the default stays
                oldest = next(k for k in self._searches if k != (self.beam_size, self.alpha))
                del self._searches[oldest]
        self._searches.move_to_end(key)
        return self._searches[key]

    def translate(self, texts: Sequence[str], nbest: int, beam_size: int, alpha: float) -> Hypotheses:
        return self._translator(beam_size, alpha).scored(texts, nbest)

    def warm_up(self) -> int:
        return self.translator.warm_up()

    def count_tokens(self, text: str) -> int:
        return len(self.translator.tokenizer.encode(text)) + 1  # with EOS

    def attention(self, text: str) -> AttentionMaps:
        return self.translator.attention(text, merge_words=True)

    def describe(self) -> dict[str, Any]:
        config = self.translator.config
        return {
            "backend": self.name, "workdir": self.workdir, "step": self.translator.step,
            "model": {key: config.model[key] for key in ("d_model", "d_ff", "num_heads", "num_encoder_layers",
                                                         "num_decoder_layers", "norm_placement", "dtype")},
            "vocabulary": {"size": self.translator.tokenizer.vocab_size, "source_lang": config.data.source_lang,
                           "target_lang": config.data.target_lang},
            "decode": {"beam_size": self.beam_size, "alpha": self.alpha,
                       "max_extra_length": config.decode.max_extra_length,
                       "max_source_length": config.data.max_source_length,
                       "batch_tokens": config.decode.batch_tokens},
        }


class CTranslate2Backend:
    """CTranslate2 on the workdir's model, converted when the server starts (int8 with quantize="int8"):
    any beam size and alpha, nothing to compile. Attention maps need the jax backend."""

    name = "ctranslate2"
    # nothing to compile per shape, and CTranslate2 decodes sources of one length per call (one length limit per
    # call): merge more of the waiting requests than the JAX backend does
    batch_tokens = 16384

    def __init__(self, translator: Any, workdir: str, step: int | None) -> None:
        self.translator, self.workdir, self.step = translator, workdir, step
        self.beam_size, self.alpha = translator.beam_size, translator.alpha

    @classmethod
    def from_workdir(
        cls, workdir: str, checkpoint: str = "latest", quantize: str | None = None,
        overrides: Sequence[tuple[str, str]] = (),
    ) -> CTranslate2Backend:
        import tempfile

        from t2t_jax.serving.ctranslate2 import CTranslate2Translator, export_ctranslate2

        with tempfile.TemporaryDirectory() as scratch:
            manifest = export_ctranslate2(workdir, f"{scratch}/export", checkpoint, quantize)
            translator = CTranslate2Translator.from_export(f"{scratch}/export", intra_threads=0)
        for key, text in overrides:  # the decode settings CTranslate2 reads from the manifest
            field = key.removeprefix("decode.")
            if field in ("beam_size", "max_extra_length"):
                setattr(translator, field, int(text))
            elif field == "alpha":
                translator.alpha = float(text)
            else:
                raise UserError(f"--config.{key} does not apply to --backend ctranslate2")
        return cls(translator, workdir, manifest.get("step"))

    def translate(self, texts: Sequence[str], nbest: int, beam_size: int, alpha: float) -> Hypotheses:
        return self.translator.scored(texts, nbest, beam_size, alpha)

    def warm_up(self) -> int:
        self.translator.translate(["warm up"])  # loads the kernels once
        return 0

    def count_tokens(self, text: str) -> int:
        return len(self.translator.tokenizer.encode(text)) + 1

    def describe(self) -> dict[str, Any]:
        manifest = self.translator.manifest
        return {
            "backend": self.name, "workdir": self.workdir, "step": self.step,
            "quantization": manifest.get("quantization"),
            "vocabulary": {"size": self.translator.tokenizer.vocab_size, "source_lang": manifest.get("source_lang"),
                           "target_lang": manifest.get("target_lang")},
            "decode": {"beam_size": self.beam_size, "alpha": self.alpha,
                       "max_extra_length": self.translator.max_extra_length,
                       "max_source_length": self.translator.max_source_length,
                       "batch_tokens": self.batch_tokens},
        }
