import os

import pytest


@pytest.fixture(scope="session")
def encodings_base():
    from gptoss_jax.harmony.tokenizer import ensure_vocabulary
    return ensure_vocabulary()


@pytest.fixture(scope="session")
def oh(encodings_base):
    """openai-harmony, loaded offline from our verified vocabulary; the test is skipped (with the reason) if
    the package is not installed."""
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = encodings_base
    module = pytest.importorskip("openai_harmony", reason="openai-harmony is not installed (pip install "
                                 "'gptoss-jax[test]'): the parity tests need it as the reference")
    return module


@pytest.fixture(scope="session")
def oh_encoding(oh):
    return oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)
