"""The project's error classes: one base, and the kinds a caller handles differently.

    GptOssError                 every error the project raises on purpose; its message names what is wrong and
                                what was expected. Front ends (CLI, eval harness, server) show it as one line.
      InputError (ValueError)   input that cannot be taken: token ids, flags, requests, chats, schemas, configs,
                                checkpoints, meshes, kernel names. The caller's to fix; nothing else is affected.
        ConfigError             a config.json or preset that cannot describe a gpt-oss model
        CheckpointError         a checkpoint that cannot be loaded (file, tensor, found vs expected)
        ShardingError           a mesh or an array that does not split the way the sharding table says
        KernelError             a kernel name that names no implementation
        Mxfp4Error              arrays that are not a valid MXFP4 (blocks, scales) pair
      SetupError (RuntimeError) this installation or machine lacks something (a package, a vocabulary file, an
                                isolation tool); the message says what to install
      DistributedError (RuntimeError)
                                a multi-process job that cannot start, or whose processes disagree

Subsystems define their own kinds as subclasses of these (engine.RequestError, harmony's ChatInputError,
ConstraintError, RenderError, HarmonyParseError, VocabularyError, ...), so `except InputError` catches every
bad-input error wherever it was raised.
"""
from __future__ import annotations


class GptOssError(Exception):
    """Base of every error the project raises on purpose."""


class InputError(GptOssError, ValueError):
    """Input that cannot be taken (token ids, arguments, requests, files); the message says what was expected."""


class ConfigError(InputError):
    """A config.json or preset that cannot describe a gpt-oss model."""


class CheckpointError(InputError):
    """A checkpoint that cannot be loaded: names the file/tensor, what was found and what was expected."""


class ShardingError(InputError):
    """A mesh or array that does not fit the sharding table."""


class KernelError(InputError):
    """A kernel name that names no implementation (the message lists the ones there are)."""


class Mxfp4Error(InputError):
    """Arrays that are not a valid MXFP4 (blocks, scales) pair."""


class SetupError(GptOssError, RuntimeError):
    """This installation or machine lacks something the call needs; the message names what to install."""


class DistributedError(GptOssError, RuntimeError):
    """A multi-process job that cannot start, or whose processes disagree: says which process and what."""
