"""SentencePiece vocabularies: load, train, and the fixed vocabulary of the algorithmic tasks.

Imports only sentencepiece and numpy (no tensorflow): the Translator and the GPU benchmark machines use it.
Ids follow T2T: pad 0, eos 1, unk 2, no BOS. `encode` never appends EOS; the data pipeline does.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from t2t_jax import storage
from t2t_jax.errors import UserError, one_line

VOCAB_FILE = "vocab.model"  # a workdir's (and an export's) SentencePiece model
MODEL_TYPES = ("bpe", "unigram")
ALGORITHMIC_SYMBOLS = tuple("0123456789+")  # one piece per symbol, ids 3.. in this order


class Tokenizer:
    """A SentencePiece model with the T2T special ids (pad 0, eos 1, unk 2)."""

    PAD_ID = 0
    EOS_ID = 1
    UNK_ID = 2

    def __init__(self, processor: spm.SentencePieceProcessor, path: str) -> None:
        self._processor = processor
        self.path = path
        self.vocab_size: int = processor.get_piece_size()

    @classmethod
    def load(cls, path: str) -> Tokenizer:
        """Loads a `.model` file written by SentencePiece; checks its special ids."""
        if not storage.is_file(path):
            raise UserError(f"SentencePiece model not found: {path}")
        proto = storage.read_bytes(path)
        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(proto)
        except (RuntimeError, OSError) as error:
            raise UserError(f"{path} is not a SentencePiece model ({one_line(error)})") from None
        _check_special_ids(processor, path)
        return cls(processor, path)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without EOS."""
        return self._processor.encode(text, num_threads=1)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without EOS."""
        return self._processor.encode(list(texts), num_threads=1)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of `ids` up to the first EOS; pads are dropped, ids outside the vocabulary read as unk."""
        return self._processor.decode(self._clean(ids))

    def pieces(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """The piece of each id (specials included), e.g. for attention plots."""
        return [self._processor.id_to_piece(i) for i in self._in_range(ids)]

    def _clean(self, ids: Sequence[int] | np.ndarray) -> list[int]:
        kept = []
        for i in self._in_range(ids):
            if i == self.EOS_ID:
                break
            if i != self.PAD_ID:
                kept.append(i)
        return kept

    def _in_range(self, ids: Sequence[int] | np.ndarray) -> list[int]:
        flat = np.asarray(ids, dtype=np.int64).reshape(-1).tolist()
        return [i if 0 <= i < self.vocab_size else self.UNK_ID for i in flat]


def train_tokenizer(
    lines: Iterable[str],
    model_path: str,
    vocab_size: int,
    model_type: str = "bpe",
    *,
    character_coverage: float = 1.0,
    normalization: str = "nmt_nfkc",
    num_threads: int = 2,
) -> Tokenizer:
    """Trains a SentencePiece model on `lines` (all of them: sample beforehand) and writes `model_path`."""
    if model_type not in MODEL_TYPES:
        raise UserError(f"vocab_model_type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            normalization_rule_name=normalization,
            pad_id=Tokenizer.PAD_ID,
            eos_id=Tokenizer.EOS_ID,
            unk_id=Tokenizer.UNK_ID,
            bos_id=-1,
            num_threads=num_threads,
            minloglevel=2,
        )
    except RuntimeError as error:
        raise UserError(f"SentencePiece training for {model_path} failed: {one_line(error)}") from None
    return _write_model(model.getvalue(), model_path)


def write_algorithmic_vocabulary(model_path: str) -> Tokenizer:
    """Writes the fixed vocabulary of the algorithmic tasks: specials, then one word piece per symbol."""
    proto = sentencepiece_model_pb2.ModelProto()
    specials = (("<pad>", proto.SentencePiece.CONTROL), ("</s>", proto.SentencePiece.CONTROL),
                ("<unk>", proto.SentencePiece.UNKNOWN))
    for piece, kind in specials:
        proto.pieces.add(piece=piece, score=0.0, type=kind)
    for symbol in ALGORITHMIC_SYMBOLS:
        proto.pieces.add(piece="\u2581" + symbol, score=0.0, type=proto.SentencePiece.NORMAL)
    trainer = proto.trainer_spec
    trainer.model_type = sentencepiece_model_pb2.TrainerSpec.WORD
    trainer.vocab_size = len(proto.pieces)
    trainer.pad_id, trainer.eos_id, trainer.unk_id, trainer.bos_id = 0, 1, 2, -1
    trainer.pad_piece, trainer.eos_piece, trainer.unk_piece = "<pad>", "</s>", "<unk>"
    normalizer = proto.normalizer_spec
    normalizer.name = "identity"
    normalizer.add_dummy_prefix = True
    normalizer.remove_extra_whitespaces = True
    normalizer.escape_whitespaces = True
    return _write_model(proto.SerializeToString(), model_path)


def _write_model(proto: bytes, model_path: str) -> Tokenizer:
    """Writes atomically (other processes poll for the file), then loads it back."""
    storage.write_atomically(model_path, proto)
    return Tokenizer.load(model_path)


def _check_special_ids(processor: spm.SentencePieceProcessor, path: str) -> None:
    expected = {"pad": Tokenizer.PAD_ID, "eos": Tokenizer.EOS_ID, "unk": Tokenizer.UNK_ID, "bos": -1}
    found = {"pad": processor.pad_id(), "eos": processor.eos_id(), "unk": processor.unk_id(),
             "bos": processor.bos_id()}
    wrong = [f"{name} id is {found[name]}, expected {want}" for name, want in expected.items()
             if found[name] != want]
    if wrong:
        raise UserError(f"{path} does not use the T2T ids (pad 0, eos 1, unk 2, no bos): {'; '.join(wrong)}")
