"""Tools the model can call: the function-calling loop, the sandboxed python tool, the browser.

``sandbox.run_python`` is a stable API reused by the eval harness to grade code; import the submodules
directly (``from gptoss_jax.harmony.tools.sandbox import run_python``) to avoid loading the others.
"""
