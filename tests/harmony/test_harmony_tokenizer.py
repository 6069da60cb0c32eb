"""o200k_harmony offline: built from quicktok-v1, verified by sha256, cached where tiktoken looks."""
import hashlib
import os
import subprocess
import sys

import pytest

from gptoss_jax.harmony import tokenizer as tok


def test_hello_world_and_specials():
    enc = tok.get_encoding()
    assert enc.encode("hello world") == [24912, 2375]
    assert enc.n_vocab == tok.VOCAB_SIZE == 201088
    assert enc.encode("<|start|>assistant<|channel|>final<|message|>", allowed_special="all")[:1] == [200006]
    for name, token in tok.NAMED_SPECIAL_TOKENS.items():
        assert enc.encode_single_token(name) == token
    assert enc.decode([200100]) == "<|reserved_200100|>" and enc.decode([201087]) == "<|reserved_201087|>"
    assert tok.encode_text("<|end|>") != [tok.END]  # text is never a special token
    assert tok.STOP_TOKENS == {200002, 200007, 200012}
    assert tok.STOP_TOKENS_FOR_ASSISTANT_ACTIONS == {200002, 200012}


def test_pattern_is_tiktokens_o200k_pattern(encodings_base):
    import tiktoken
    assert tiktoken.get_encoding("o200k_base")._pat_str == tok.O200K_PAT_STR


def test_vocabulary_file_has_tiktokens_expected_hash(encodings_base):
    path = os.path.join(encodings_base, "o200k_base.tiktoken")
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == tok.O200K_BASE_SHA256


def test_tiktoken_itself_loads_o200k_base_offline_from_the_cache(tmp_path):
    env = {**os.environ, "GPTOSS_JAX_CACHE": str(tmp_path / "gj"), "TIKTOKEN_CACHE_DIR": str(tmp_path / "tk"),
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    code = ("from gptoss_jax.harmony.tokenizer import ensure_vocabulary\nensure_vocabulary()\n"
            "import tiktoken\nprint(tiktoken.get_encoding('o200k_base').encode('hello world'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[24912, 2375]"


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTOSS_JAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tk"))
    tok.o200k_base_tiktoken_bytes.cache_clear()
    yield tmp_path
    tok.o200k_base_tiktoken_bytes.cache_clear()


def test_wrong_hash_is_refused(fresh_cache, monkeypatch):
    with open(tok.quicktok_vocab_path(), "rb") as f:
        data = bytearray(f.read())
    data[-1] ^= 1  # corrupt one rank byte
    bad = fresh_cache / "bad.vocab"
    bad.write_bytes(bytes(data))
    monkeypatch.setattr(tok, "quicktok_vocab_path", lambda: str(bad))
    with pytest.raises(tok.VocabularyError, match="sha256 .* expected 446a9538"):
        tok.o200k_base_tiktoken_bytes()
    assert not (fresh_cache / "cache").exists() or not any((fresh_cache / "cache").rglob("*.tiktoken"))


def test_missing_package_is_one_clear_error(fresh_cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "quicktok", None)
    with pytest.raises(tok.VocabularyError, match="quicktok-v1"):
        tok.o200k_base_tiktoken_bytes()


def test_truncated_vocab_is_one_clear_error():
    with pytest.raises(tok.VocabularyError, match="malformed"):
        tok.tiktoken_text_from_quicktok(b"\x05\x00\x00\x00\x02\x00a")


def test_expected_hash_is_the_one_tiktoken_declares():
    import inspect
    from tiktoken_ext import openai_public
    source = inspect.getsource(openai_public.o200k_base)
    assert f'expected_hash="{tok.O200K_BASE_SHA256}"' in source
