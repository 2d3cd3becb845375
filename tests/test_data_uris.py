"""Data URI parsing: schemes, TFDS splits, mixtures with weights, and the errors for bad URIs."""

import pytest

from t2t_jax.data.uris import AlgorithmicUri, TextUri, TfdsUri, TsvUri, parse_mixture, parse_uri
from t2t_jax.errors import UserError


def test_schemes():
    assert parse_uri("tfds:wmt14_translate/de-en") == TfdsUri("wmt14_translate/de-en", None)
    assert parse_uri("tfds:wmt_t2t_translate/de-en:1.0.0?split=test[:10%]") == TfdsUri(
        "wmt_t2t_translate/de-en:1.0.0", "test[:10%]")
    assert parse_uri("text:a.en, b.de") == TextUri("a.en", "b.de")
    assert parse_uri("text:lines.txt") == TextUri("", "lines.txt")  # one-sided: a language model's text
    assert parse_uri("tsv:x.tsv") == TsvUri("x.tsv")
    assert parse_uri("algorithmic:reverse") == AlgorithmicUri("reverse")


def test_mixture_weights():
    mixture = parse_mixture("text:a,b@3; algorithmic:copy ;tsv:/data/x@y/z.tsv@0.5")
    assert mixture == [(TextUri("a", "b"), 3.0), (AlgorithmicUri("copy"), 1.0), (TsvUri("/data/x@y/z.tsv"), 0.5)]
    assert parse_mixture("tsv:/data/me@host/x.tsv") == [(TsvUri("/data/me@host/x.tsv"), 1.0)]


@pytest.mark.parametrize("uri, words", [
    ("csv:a.csv", "unknown data URI 'csv:a.csv'"),
    ("a.en,b.de", "unknown data URI"),
    ("algorithmic:multiply", "unknown algorithmic task 'multiply'"),
    ("text:a,b,c", "expected text:SRC_PATH,TGT_PATH"),
    ("text:a,", "expected text:SRC_PATH,TGT_PATH"),
    ("tfds:wmt14_translate/de-en?splt=test", "the only option is ?split=SPLIT"),
    ("text:a,b@0", "must be positive"),
    ("", "empty data URI"),
])
def test_bad_uris(uri, words):
    with pytest.raises(UserError) as error:
        parse_mixture(uri)
    assert words in str(error.value)
