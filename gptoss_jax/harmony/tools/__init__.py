"""Tools the model can call: the function-calling loop, the sandboxed python tool, the browser.

``sandbox.run_python`` is the one way model-written code runs (the python tool, the tool loop and the eval
harness's code graders all call it); import the submodules directly
(``from gptoss_jax.harmony.tools.sandbox import run_python``) to avoid loading the others.
"""
