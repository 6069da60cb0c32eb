"""Parser behaviour: streaming deltas, OpenAI-style results, strict errors, and a fuzz test (random token
streams with special tokens never raise anything but HarmonyParseError in strict mode, nothing otherwise)."""
import random
import time

import pytest

from gptoss_jax.harmony import tokenizer as tok
from gptoss_jax.harmony.conversation import Role
from gptoss_jax.harmony.parse import HarmonyParseError, StreamParser, parse_messages
from gptoss_jax.harmony.results import parse_completion


def enc(text):
    return tok.get_encoding().encode(text, allowed_special="all")


def test_streaming_exposes_channel_recipient_and_deltas():
    tokens = enc("<|channel|>analysis<|message|>Let me think: 日本.<|end|><|start|>assistant<|channel|>commentary "
                 "to=functions.lookup <|constrain|>json<|message|>{\"q\": \"x\"}<|call|>")
    p = StreamParser()
    seen = []
    for t in tokens:
        p.process(t)
        if p.last_content_delta:
            seen.append((p.current_channel, p.current_recipient, p.current_content_type, p.last_content_delta))
    p.finish()
    assert "".join(d for c, *_, d in seen if c == "analysis") == "Let me think: 日本."
    assert {(c, r, ct) for c, r, ct, _ in seen} == {("analysis", None, None),
                                                   ("commentary", "functions.lookup", "<|constrain|>json")}
    assert [m.channel for m in p.messages] == ["analysis", "commentary"]
    assert p.stop_tokens == [tok.END, tok.CALL]


def test_multibyte_character_split_across_tokens_is_delivered_whole():
    emoji = "🎉"
    byte_tokens = [tok.get_encoding().encode_single_token(bytes([b])) for b in emoji.encode()]
    p = StreamParser().process_all(enc("<|channel|>final<|message|>"))
    deltas = []
    for t in byte_tokens:
        p.process(t)
        deltas.append(p.last_content_delta)
    assert deltas == [None, None, None, emoji]
    assert p.finish().messages[0].text == emoji


def test_parse_completion_openai_result():
    tokens = enc("<|channel|>analysis<|message|>First thought.<|end|>"
                 "<|start|>assistant<|channel|>commentary<|message|>Checking the weather.<|end|>"
                 "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
                 "{\"city\":\"Oslo\"}<|call|>")
    r = parse_completion(tokens)
    assert r.reasoning == "First thought." and r.content is None and r.finish_reason == "tool_calls"
    assert r.preambles == ("Checking the weather.",)
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("get_weather", '{"city":"Oslo"}')]
    msg = r.to_message()
    assert msg["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Oslo"}'}
    assert msg["tool_calls"][0]["id"].startswith("call_")

    r = parse_completion(enc("<|channel|>analysis<|message|>A<|end|><|start|>assistant<|channel|>analysis"
                             "<|message|>B<|end|><|start|>assistant<|channel|>final<|message|>42<|return|>"))
    assert (r.content, r.reasoning, r.finish_reason) == ("42", "A\nB", "stop")
    r = parse_completion(enc("<|channel|>analysis<|message|>cut off mid"))
    assert (r.content, r.reasoning, r.finish_reason) == (None, "cut off mid", "length")
    r = parse_completion(enc("<|channel|>analysis<|message|>x<|end|><|start|>assistant<|channel|>analysis to=python"
                             " code<|message|>print(1)<|call|>"))
    assert r.builtin_calls[0].recipient == "python" and r.builtin_calls[0].content == "print(1)"


@pytest.mark.parametrize("text, needle", [
    ("<|channel|>final<|message|>x<|end|>stray", "expecting <|start|>"),
    ("hello<|start|>assistant", "<|start|> inside a message header"),
    ("<|channel|><|message|>x<|end|>", "no channel name"),
    ("<|channel|>final<|end|>", "stop token"),
    ("<|channel|>final<|message|>x<|start|>assistant", "inside message content"),
    ("<|channel|>final to=a b c<|message|>x<|end|>", "unexpected words"),
    ("<|channel|>final", "stream ended inside a message header"),
])
def test_strict_mode_raises_one_error_type(text, needle):
    with pytest.raises(HarmonyParseError, match=needle.replace("|", r"\|")):
        parse_messages(enc(text))


def test_non_strict_recovers():
    msgs = parse_messages(enc("<|channel|>final<|message|>partial<|start|>assistant<|channel|>final<|message|>"
                              "again<|return|>junk<|start|>assistant<|channel|>analysis<|end|>"), strict=False)
    assert [(m.channel, m.text) for m in msgs] == [("final", "partial"), ("final", "again")]
    msgs = parse_messages(enc("<|channel|>final<|end|>"), strict=False)
    assert [(m.role, m.channel, m.text) for m in msgs] == [(Role.ASSISTANT, "final", "")]
    assert parse_messages([-5, 10 ** 9, tok.START], None, strict=False) == []


SPECIALS = sorted(tok.NAMED_SPECIAL_TOKENS.values()) + [200000, 200013, 200500, 201087]
WORDS = ["assistant", "user", "system", "developer", "tool", "functions.get", " to=", " to=functions.x", "analysis",
         "final", "commentary", " json", " ", "\n", "日本", "🎉", "<|", "to=assistant"]


def _random_stream(rng: random.Random, length: int) -> list[int]:
    word_tokens = [enc(w) for w in WORDS]
    out = []
    while len(out) < length:
        r = rng.random()
        if r < 0.35:
            out.append(rng.choice(SPECIALS))
        elif r < 0.7:
            out += rng.choice(word_tokens)
        elif r < 0.97:
            out.append(rng.randrange(0, 199998))
        else:
            out.append(rng.choice([-1, tok.VOCAB_SIZE, 10 ** 7]))
    return out[:length]


def test_fuzz_strict_raises_only_harmony_parse_error_and_non_strict_never_raises():
    rng = random.Random(20240605)
    deadline = time.monotonic() + 20
    n = 0
    outcomes = {"ok": 0, "error": 0}
    while n < 3000 and time.monotonic() < deadline:
        tokens = _random_stream(rng, rng.randint(0, 50))
        role = rng.choice([None, Role.ASSISTANT])
        try:
            parse_messages(tokens, role, strict=True)
            outcomes["ok"] += 1
        except HarmonyParseError:
            outcomes["error"] += 1
        p = StreamParser(role, strict=False)
        for t in tokens:
            p.process(t)
            _ = (p.current_content, p.current_channel, p.last_content_delta)
        p.finish()
        parse_completion(tokens)  # non-strict by default
        n += 1
    assert n >= 1000
    assert outcomes["ok"] > 0 and outcomes["error"] > 0  # the fuzzer reaches both paths


def test_fuzz_wellformed_streams_roundtrip_in_both_modes():
    from gptoss_jax.harmony.conversation import Message
    from gptoss_jax.harmony.render import render_message
    rng = random.Random(7)
    for _ in range(200):
        msgs = []
        for _ in range(rng.randint(1, 4)):
            channel = rng.choice(["analysis", "commentary", "final"])
            recipient = rng.choice([None, None, "functions.f", "python"])
            ctype = rng.choice([None, "<|constrain|>json", "code"]) if recipient else None
            text = "".join(rng.choice(WORDS[11:] + ["abc", "x y"]) for _ in range(rng.randint(0, 5)))
            msgs.append(Message.of("assistant", text, channel=channel, recipient=recipient, content_type=ctype))
        tokens = [t for m in msgs for t in render_message(m)]
        for strict in (True, False):
            got = parse_messages(tokens, None, strict=strict)
            assert [(m.channel, m.recipient, m.content_type, m.text) for m in got] == \
                [(m.channel, m.recipient, m.content_type, m.text) for m in msgs]
