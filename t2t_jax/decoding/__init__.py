"""Decoding as pure functions over a `tokens_to_logits(previous_tokens, cache)` callable; no tensorflow."""

from t2t_jax.decoding.beam_search import BeamSearchResult, beam_search, expand_to_beams, gather_beams, length_penalty
from t2t_jax.decoding.sampling import SampleResult, filter_logits, greedy, sample

__all__ = [
    "BeamSearchResult", "SampleResult", "beam_search", "expand_to_beams", "filter_logits", "gather_beams", "greedy",
    "length_penalty", "sample",
]
