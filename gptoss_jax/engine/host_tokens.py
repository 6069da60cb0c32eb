"""The host side of every sampled token: record it, check the stop conditions (stop strings exactly: the stop
that STARTS earliest in the text ends it), stream it, and finish requests into Results. A mixin of the Engine."""
from __future__ import annotations

import time
from typing import Sequence

from gptoss_jax.engine import sampling
from gptoss_jax.engine.live import Live, Packed
from gptoss_jax.engine.requests import Result, TokenEvent

_STATUS_ERRORS = {
    sampling.NOTHING_ALLOWED: "no token is allowed here (the constraint's mask and the logit bias left nothing to "
                              "sample)",
    sampling.NOT_FINITE: "the model's logits are not finite (NaN or inf): its weights or activations hold NaN/inf; "
                         "load with check_finite=True (the default, CLI --check_finite) to find the tensor",
}


def earliest_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """(index, stop) of the stop string that starts earliest in text (ties: the longest), or None."""
    hits = [(i, -len(x), x) for x in stops if (i := text.find(x)) >= 0]
    if not hits:
        return None
    i, _, x = min(hits)
    return i, x


class TokenHandling:
    """Engine methods for tokens the host has read (self: the Engine)."""

    def _take(self, s: Live, out: Packed, idx) -> None:
        """Host side of one sampled token of request s (out[idx]): record, check every stop condition, stream."""
        status = int(out.status[idx])
        if status != sampling.OK:
            self._finish(s, "error", error=_STATUS_ERRORS.get(status, f"sampling failed (status {status})"))
            return
        tok = int(out.token[idx])
        sp = s.req.sampling
        if not s.tokens:
            s.t_first = time.perf_counter()
        s.tokens.append(tok)
        lp = float(out.logprob[idx]) if sp.logprobs else None
        top = None
        if sp.top_logprobs:
            top = [(int(i), float(v)) for i, v in zip(out.top_ids[idx][:sp.top_logprobs],
                                                      out.top_logprobs[idx][:sp.top_logprobs])]
            s.top.append(top)
        if sp.logprobs:
            s.logprobs.append(lp)
        reason, stop_reason, error = None, None, None
        try:
            if tok in sp.stop_token_ids:
                reason, stop_reason = "stop", tok
            elif sp.stop and (hit := self._stop_string(s)) is not None:
                reason, stop_reason = "stop", hit
            elif sp.max_tokens is not None and len(s.tokens) >= sp.max_tokens:
                reason = "length"
            elif s.length >= self.max_len:
                reason = "length"
            c = s.req.constraint
            if c is not None and reason is None:
                c.advance(tok)
                if c.is_finished():
                    reason, stop_reason = "stop", "constraint"
                else:
                    s.mask = self.masks.start(c)
        except Exception as e:  # noqa: BLE001 - detokenizer / constraint failure: this request only
            reason, error = "error", f"{type(e).__name__}: {e}"
        ev = TokenEvent(s.id, len(s.tokens) - 1, tok, lp, top, reason)
        self._emit(s, ev)
        if reason is not None and not s.done:
            self._finish(s, reason, stop_reason, error, event_sent=True)

    def _stop_string(self, s: Live) -> str | None:
        """The stop string the last token completed, if any: a stop completes at most at this token (else it would
        have ended the request before), so the detokenized tail of the last tokens holds every candidate, and of
        several the one that starts earliest wins."""
        stops = s.req.sampling.stop
        look = 4 * max(len(x) for x in stops) + 4
        hit = earliest_stop(self.detokenize(s.tokens[-look:]), stops)
        return None if hit is None else hit[1]

    def _emit(self, s: Live, ev: TokenEvent) -> None:
        self._events.append(ev)
        if s.on_token is not None:
            try:
                s.on_token(ev)
            except Exception as e:  # noqa: BLE001 - the caller's callback failed: its request ends
                if not s.done:
                    self._finish(s, "error", error=f"on_token callback raised {type(e).__name__}: {e}",
                                 event_sent=ev.finish_reason is not None)

    def _finish(self, s: Live, reason: str, stop_reason=None, error: str | None = None, *,
                event_sent: bool = False) -> None:
        if s.done:
            return
        s.done = True
        if s.slot >= 0 and self.slots[s.slot] is s:
            self.slots[s.slot] = None
            if self.prefix is not None:
                self.prefix.finished(s.slot)
        now = time.perf_counter()
        sp = s.req.sampling
        text = None
        if self.detokenize is not None:
            try:
                ids = s.tokens[:-1] if reason == "stop" and isinstance(stop_reason, int) else s.tokens
                text = self.detokenize(ids)
                if isinstance(stop_reason, str) and stop_reason != "constraint":
                    hit = earliest_stop(text, sp.stop)     # the full text: the cut is where the first stop starts
                    if hit is not None:
                        text, stop_reason = text[:hit[0]], hit[1]
            except Exception as e:  # noqa: BLE001
                reason, error = "error", f"detokenize failed: {type(e).__name__}: {e}"
        first = s.t_first or now
        res = Result(
            id=s.id, prompt_tokens=len(s.prompt), completion_tokens=len(s.tokens), token_ids=list(s.tokens),
            finish_reason=reason, stop_reason=stop_reason, logprobs=s.logprobs if sp.logprobs else None,
            top_logprobs=s.top if sp.top_logprobs else None,
            prompt_logprobs=s.prompt_lp if s.req.score_from is not None else None,
            prompt_greedy=s.prompt_top if s.req.score_from is not None else None,
            text=text, error=error, seed=s.seed, cached_tokens=s.cached,
            timings={"queued_s": (s.t_admit or now) - s.t_submit, "ttft_s": first - s.t_submit,
                     "prefill_s": first - (s.t_admit or now), "decode_s": now - first, "total_s": now - s.t_submit})
        self.results[s.id] = res
        if not event_sent:
            self._emit(s, TokenEvent(s.id, len(s.tokens), -1, finish_reason=reason))
