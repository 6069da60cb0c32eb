"""The Pallas Triton lowering, imported once with its deprecation notice silenced.

jax 0.11 deprecates Pallas' Triton backend in favour of Mosaic GPU but keeps it working; the GPU machines pin jax
0.11.2, and kernels/README.md says why these kernels use it. The notice fires at import and again at every
lowering, so it is filtered by its message, here only.
"""
import warnings

warnings.filterwarnings("ignore", message="The Pallas Triton backend is deprecated", category=DeprecationWarning)

from jax.experimental.pallas import triton as pltr  # noqa: E402

__all__ = ["pltr"]
