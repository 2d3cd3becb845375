"""What several test files share: a small Transformer and its parameters, word corpora and data settings,
import checks in a fresh interpreter, and fixtures for trained workdirs (tests import the plain helpers from here)."""

import dataclasses
import functools
import json
import os
import subprocess
import sys
import tempfile

# XLA programs compiled by one test (or one test's child process) load from disk in the next: many tests compile
# the same small models. Set before JAX is imported; children inherit it.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "t2t-jax-tests-xla-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
# The test models are tiny: LLVM's optimizations cost more compile time than they save in run time (a fifth of
# the suite's time). They change how fast the code runs, not what it computes.
os.environ["XLA_FLAGS"] = " ".join(dict.fromkeys(os.environ.get("XLA_FLAGS", "").split()
                                                + ["--xla_backend_optimization_level=0"]))

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from train_helpers import run_cli

from t2t_jax.data.settings import DataSettings
from t2t_jax.model import Transformer, TransformerConfig

# --- a small Transformer ---------------------------------------------------------------------------------------
VOCAB = 23
SMALL_MODEL = dict(d_model=32, d_ff=64, num_heads=4, num_encoder_layers=2, num_decoder_layers=2, max_length=64)


def small_config(**overrides):
    """TransformerConfig.tiny shrunk to SMALL_MODEL over VOCAB tokens, with `overrides`."""
    return TransformerConfig.tiny(**{"vocab_size": VOCAB, **SMALL_MODEL, **overrides})


@functools.cache
def init_params(config, seed=0):
    """Parameters of Transformer(config) as init returns them (boxed), from [1, 6] sources and [1, 5] targets.
    Cached: tests reuse these shapes, so the tiny model runs op by op (eager) without compiling anything new."""
    inputs, targets = jnp.ones((1, 6), jnp.int32), jnp.ones((1, 5), jnp.int32)
    init = Transformer(config).init
    if config.scan_layers:  # eager nn.scan recompiles its body on every call: compile once instead
        init = jax.jit(init)
    return init(jax.random.PRNGKey(seed), inputs, targets)["params"]


def abstract_params(config, source_length=6, target_length=5):
    """Parameter shapes only (jax.eval_shape: no real initialization), boxed as init returns them."""
    inputs, targets = jnp.ones((1, source_length), jnp.int32), jnp.ones((1, target_length), jnp.int32)
    return jax.eval_shape(Transformer(config).init, jax.random.PRNGKey(0), inputs, targets)["params"]


def random_tokens(seed, shape, low=2):
    """int32 tokens drawn from [low, VOCAB): no padding (0) or EOS (1) with the default low."""
    return jnp.asarray(np.random.default_rng(seed).integers(low, VOCAB, shape), jnp.int32)


# --- word corpora and data settings ----------------------------------------------------------------------------
WORDS = ("the a man woman dog cat runs sits on in red blue big small house street park ball girl boy child "
         "walks jumps plays with green yellow white black water grass tree car bike road").split()


def sentences(count, seed=0, words=(2, 8)):
    """`count` random sentences of WORDS; `words` is the (low, high) range of their word counts, high excluded."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(*words))) for _ in range(count)]


def write_lines(path, lines):
    """Writes `lines` to `path` (a pathlib.Path), one a line, as UTF-8; returns the path as a string."""
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def data_config(**overrides):
    """A `config.data` ConfigDict: every DataSettings default, with `overrides`."""
    fields = {field.name: field.default for field in dataclasses.fields(DataSettings)}
    fields.update(overrides)
    return ml_collections.ConfigDict(fields)


# --- imports in a fresh interpreter ----------------------------------------------------------------------------
def modules_loaded(imports, where):
    """The sorted names m in sys.modules for which the expression `where` holds, after `import {imports}` in a
    fresh Python process."""
    code = f"import json, sys\nimport {imports}\nprint(json.dumps(sorted(m for m in sys.modules if {where})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


# --- trained workdirs ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def train_workdir(tmp_path_factory):
    """train(name, *args): the workdir, in a new temporary folder `name`, that `t2t-jax train *args` trained."""

    def train(name, *args):
        workdir = str(tmp_path_factory.mktemp(name) / "reverse")
        result = run_cli("train", "--workdir", workdir, *args)
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        return workdir

    return train


@pytest.fixture(scope="module")
def translator(workdir):
    """The Translator of the requesting test module's (trained) `workdir` fixture."""
    from t2t_jax.translate import Translator

    return Translator.from_workdir(workdir)
