"""Quiet stderr for sweeps: no per-request HTTP lines or grader-library warnings unless ``--verbose``.

The ``openai`` client logs every request through httpx at INFO ("HTTP Request: POST ... 200 OK"); math-verify warns
on every answer it cannot parse; tau2 logs through loguru at import. A sweep of 10,000 samples would bury its
progress bar and its real errors under them. Per-sample problems are in the records either way.
"""
from __future__ import annotations

import logging
import warnings

NOISY = ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "urllib3", "math_verify", "latex2sympy2_extended", "absl", "tau2")


def quiet_logs(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.ERROR
    for name in NOISY:
        logging.getLogger(name).setLevel(level)
    if not verbose:
        warnings.filterwarnings("ignore", module=r"(math_verify|latex2sympy2_extended|eval_framework|tau2)(\..*)?")
    try:
        from loguru import logger  # noqa: PLC0415  (tau2's logger, when installed)
    except ImportError:
        return
    (logger.enable if verbose else logger.disable)("tau2")
