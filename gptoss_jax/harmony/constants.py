"""Harmony's fixed numbers, in one place: the o200k_harmony vocabulary size, the special token ids, the stop
tokens, and the reasoning efforts. Importing this module costs nothing (no tokenizer, no JAX); everything else
(tokenizer, parser, engine flags, eval harness, server) imports these names from here."""
from __future__ import annotations

VOCAB_SIZE = 201088  # the model's embedding rows: o200k_base's ranks + every special/reserved id

STARTOFTEXT = 199998
ENDOFTEXT = 199999
RETURN = 200002
CONSTRAIN = 200003
CHANNEL = 200005
START = 200006
END = 200007
MESSAGE = 200008
CALL = 200012
ENDOFPROMPT = 200018

NAMED_SPECIAL_TOKENS = {
    "<|startoftext|>": STARTOFTEXT, "<|endoftext|>": ENDOFTEXT, "<|return|>": RETURN,
    "<|constrain|>": CONSTRAIN, "<|channel|>": CHANNEL, "<|start|>": START, "<|end|>": END,
    "<|message|>": MESSAGE, "<|call|>": CALL, "<|endofprompt|>": ENDOFPROMPT,
}

# Sampling stops on any of these; an assistant *action* (the reply to hand back) ends on return or call.
STOP_TOKENS: frozenset[int] = frozenset({RETURN, END, CALL})
STOP_TOKENS_FOR_ASSISTANT_ACTIONS: frozenset[int] = frozenset({RETURN, CALL})

# The system message's "Reasoning: ..." levels, lowest first.
REASONING_EFFORTS: tuple[str, ...] = ("low", "medium", "high")
