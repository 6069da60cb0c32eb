"""Harmony: gpt-oss's chat format on o200k_harmony, offline.

Render OpenAI-style chat to tokens, parse completions back (also token by token), run the function-calling
loop with built-in browser/python tools, and constrain sampling to JSON schemas, regexes, choices and
tool_choice with llguidance token masks. See WORKSPACE.md / each module's docstring for the rules.
"""
from .chat import ChatInputError, chat_to_conversation, render_chat
from .constrain import (BITMASK_WORDS, CompiledGrammar, ConstraintError, PlanBudget, TokenConstraint,
                        compile_choice, compile_json_object, compile_json_schema, compile_regex,
                        compile_response_format, compile_tool_choice)
from .conversation import (Author, Conversation, DeveloperContent, Message, ResponseFormat, Role, SystemContent,
                           TextContent, ToolDescription, ToolNamespace)
from .parse import HarmonyParseError, StreamParser, parse_messages
from .render import render_conversation, render_conversation_for_training, render_message
from .results import BuiltinCall, ChatResult, ToolCall, parse_completion
from .tokenizer import (STOP_TOKENS, STOP_TOKENS_FOR_ASSISTANT_ACTIONS, VOCAB_SIZE, VocabularyError,
                        ensure_vocabulary, get_encoding)
from .tools.functions import ToolLoopResult, run_tool_loop

__all__ = [
    "render_chat", "chat_to_conversation", "ChatInputError",
    "render_conversation", "render_conversation_for_training", "render_message",
    "parse_completion", "parse_messages", "StreamParser", "HarmonyParseError", "ChatResult", "ToolCall",
    "BuiltinCall",
    "get_encoding", "ensure_vocabulary", "VocabularyError", "STOP_TOKENS", "STOP_TOKENS_FOR_ASSISTANT_ACTIONS",
    "VOCAB_SIZE",
    "compile_json_schema", "compile_json_object", "compile_regex", "compile_choice", "compile_tool_choice",
    "compile_response_format", "CompiledGrammar", "TokenConstraint", "ConstraintError", "PlanBudget",
    "BITMASK_WORDS",
    "run_tool_loop", "ToolLoopResult",
    "Author", "Conversation", "DeveloperContent", "Message", "ResponseFormat", "Role", "SystemContent",
    "TextContent", "ToolDescription", "ToolNamespace",
]
