"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1 for tests.

It answers from a table keyed by the request's messages (and tools), counts what it saw, can inject failures, and
stops by itself after ``max_requests`` requests or ``lifetime_s`` seconds.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


def fingerprint(messages, tools=()) -> str:
    return json.dumps({"m": [{"role": m["role"], "content": m.get("content")} for m in messages],
                       "t": [t["function"]["name"] for t in tools or []]}, sort_keys=True)


class FakeOpenAI:
    def __init__(self, answer: Callable[[dict], dict | None], *, delay_s: float = 0.0, max_requests: int = 5000,
                 lifetime_s: float = 150.0, fail: Callable[[dict, int], int | None] | None = None):
        self.answer = answer
        self.delay_s = delay_s
        self.max_requests = max_requests
        self.fail = fail
        self.seen: list[dict] = []
        self.counts: Counter = Counter()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer._lock:
                    outer.seen.append(body)
                    n = len(outer.seen)
                if n > outer.max_requests or not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": "no such route or request budget spent"}})
                if outer.fail is not None:
                    code = outer.fail(body, n)
                    if code:
                        return self._send(code, {"error": {"message": f"injected {code}"}})
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                ans = outer.answer(body)
                if ans is None:
                    return self._send(400, {"error": {"message": "unknown prompt"}})
                with outer._lock:
                    outer.counts[(fingerprint(body["messages"], body.get("tools")), body.get("reasoning_effort"),
                                  body.get("seed"))] += 1
                content = ans.get("content", "")
                msg = {"role": "assistant", "content": content, "reasoning_content": ans.get("reasoning", "")}
                calls = ans.get("tool_calls") or []
                if calls:
                    msg["tool_calls"] = [{"id": c.get("id", f"call_{i}"), "type": "function",
                                          "function": {"name": c["name"], "arguments": c["arguments"]}}
                                         for i, c in enumerate(calls)]
                prompt_tokens = len(json.dumps(body["messages"])) // 4
                completion = (len(content) + len(ans.get("reasoning", ""))) // 4 + 1
                self._send(200, {
                    "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls" if calls else "stop"}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                              "total_tokens": prompt_tokens + completion,
                              "prompt_tokens_details": {"cached_tokens": prompt_tokens // 2}}})

            def _send(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True

    def start(self) -> "FakeOpenAI":
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        self._timer.cancel()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
