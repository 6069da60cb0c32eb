"""Backends: `make_backend(config)` picks one by ``config.kind``.

``local`` is imported lazily from ``evals.backends.local``, which must define ``create(config: BackendConfig) ->
Backend`` (see base.py for the contract). Until that module exists, asking for it is a clear error.
"""
from __future__ import annotations

import importlib

from evals.backends.base import (REASONING_EFFORTS, Backend, BackendConfig, BackendFatalError, Request, Result,
                                 Sampling, ToolCall)

KINDS = ("endpoint", "local")

__all__ = ["Backend", "BackendConfig", "BackendFatalError", "Request", "Result", "Sampling", "ToolCall",
           "REASONING_EFFORTS", "KINDS", "make_backend"]


def make_backend(config: BackendConfig) -> Backend:
    if config.kind == "endpoint":
        from evals.backends.endpoint import EndpointBackend  # noqa: PLC0415
        return EndpointBackend(config)
    if config.kind == "local":
        try:
            module = importlib.import_module("evals.backends.local")
        except ModuleNotFoundError as e:
            if e.name not in ("evals.backends.local",):
                raise
            raise BackendFatalError(
                "--backend=local needs evals/backends/local.py (the in-process JAX engine), which is not in this "
                "build yet; use --backend=endpoint with --base_url/--model meanwhile") from e
        create = getattr(module, "create", None)
        if create is None:
            raise BackendFatalError("evals/backends/local.py must define create(config: BackendConfig) -> Backend")
        return create(config)
    raise BackendFatalError(f"unknown backend {config.kind!r}; expected one of {KINDS}")
