"""t2t-jax: the Tensor2Tensor Transformer in JAX/Flax.

`t2t_jax.model` and `t2t_jax.decoding` are pure JAX (no tensorflow) and can be imported on their own.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Generator", "Translator", "__version__"]


def __getattr__(name: str) -> Any:  # lazy, so `import t2t_jax.model` stays light
    if name == "Translator":
        from t2t_jax.translate import Translator

        return Translator
    if name == "Generator":
        from t2t_jax.generate import Generator

        return Generator
    raise AttributeError(f"module 't2t_jax' has no attribute {name!r}")
