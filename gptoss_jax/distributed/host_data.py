"""Host data between the processes of a job: JSON-able values (and raw bytes) through the coordination service's
key-value store (the channel jax.distributed already opened, the one Orbax uses too), not device collectives, so it
needs no compilation and works for any size or process layout. Every function is collective: all processes call it,
in the same order. In a single process each is a no-op that returns the local value.

  allgather_json(value), gather_json_to_main(value), broadcast_json(value), barrier(name)
  check_same(values, what)   every process holds the same values, or one error naming the first that differs
"""
from __future__ import annotations

import itertools
import json
from typing import Any, Mapping, Sequence

from gptoss_jax.distributed._jax_compat import coordination_client, process_position
from gptoss_jax.errors import DistributedError

_CHUNK = 1 << 20  # key-value store values are sent in pieces of this many bytes
_sequence = itertools.count()


def _timeout_ms(timeout_s: float | None) -> int:
    return int((24 * 3600 if timeout_s is None else timeout_s) * 1000)


def _put(client, key: str, data: bytes) -> None:
    pieces = [data[i:i + _CHUNK] for i in range(0, len(data), _CHUNK)] or [b""]
    for i, p in enumerate(pieces):
        client.key_value_set_bytes(f"{key}/{i}", p)
    client.key_value_set(f"{key}/n", str(len(pieces)))


def _get(client, key: str, timeout_s: float | None, what: str, pid: int) -> bytes:
    try:
        n = int(client.blocking_key_value_get(f"{key}/n", _timeout_ms(timeout_s)))
        return b"".join(client.blocking_key_value_get_bytes(f"{key}/{i}", _timeout_ms(timeout_s)) for i in range(n))
    except Exception as e:  # noqa: BLE001 - the runtime raises its own error types
        raise DistributedError(f"{what}: no value from process {pid} within {timeout_s}s ({str(e).splitlines()[0]}); "
                               f"did it fail or take another code path?") from None


def _delete(client, key: str) -> None:
    try:
        client.key_value_delete(key)
    except Exception:  # noqa: BLE001 - cleanup only
        pass


def allgather_bytes(data: bytes, what: str, timeout_s: float | None, to_main_only: bool = False) -> list[bytes]:
    """Every process's bytes in process order (on process 0 only, [] elsewhere, with to_main_only)."""
    pid, n = process_position()
    if n == 1:
        return [data]
    client = coordination_client()
    key = f"gptoss/{next(_sequence)}/{what.replace('/', '_')}"
    _put(client, f"{key}/{pid}", data)
    if to_main_only and pid != 0:
        return []
    out = [data if i == pid else _get(client, f"{key}/{i}", timeout_s, what, i) for i in range(n)]
    if to_main_only:
        _delete(client, key)
    return out


def allgather_json(value: Any, *, what: str = "allgather", timeout_s: float | None = 600) -> list[Any]:
    """Every process's JSON-able value, in process order, on every process (collective: all must call it; n^2
    reads for n processes, so for small jobs or rare calls; gather_json_to_main is linear)."""
    return [json.loads(b) for b in allgather_bytes(json.dumps(value).encode(), what, timeout_s)]


def gather_json_to_main(value: Any, *, what: str = "gather", timeout_s: float | None = 600) -> list[Any] | None:
    """Every process's value on process 0 (in process order); None elsewhere (collective)."""
    out = allgather_bytes(json.dumps(value).encode(), what, timeout_s, to_main_only=True)
    return [json.loads(b) for b in out] if out else None


def broadcast_json(value: Any, *, what: str = "broadcast", timeout_s: float | None = 600) -> Any:
    """Process 0's JSON-able value on every process (host inputs such as prompts read from a file or stdin)."""
    pid, n = process_position()
    if n == 1:
        return value
    client = coordination_client()
    key = f"gptoss/{next(_sequence)}/{what.replace('/', '_')}"
    if pid == 0:
        _put(client, key, json.dumps(value).encode())
        return value
    return json.loads(_get(client, key, timeout_s, what, 0))


def barrier(name: str, *, timeout_s: float | None = None) -> None:
    """Wait until every process reaches the barrier `name` (default: wait up to a day, e.g. replicas of a sweep
    finishing at different times)."""
    pid, n = process_position()
    if n == 1:
        return
    try:
        coordination_client().wait_at_barrier(f"gptoss/{next(_sequence)}/{name}", _timeout_ms(timeout_s))
    except Exception as e:  # noqa: BLE001
        raise DistributedError(f"process {pid}: barrier {name!r} not reached by every process within {timeout_s}s "
                               f"({str(e).splitlines()[0]})") from None


def check_same(values: Mapping[str, Any], what: str = "settings", *, timeout_s: float | None = 600) -> None:
    """Raise one DistributedError, on every process, unless all processes hold equal `values` (names -> JSON-able
    values); it names the first name that differs and its value on each process. Process 0 compares (one value from
    each process) and tells everyone the verdict, so the cost grows linearly with the number of processes."""
    pid, n = process_position()
    if n == 1:
        return
    mine = {k: json.loads(json.dumps(v, default=repr)) for k, v in values.items()}
    everyone = gather_json_to_main(mine, what=f"check_same/{what}", timeout_s=timeout_s)
    problem = None
    if everyone is not None:
        for name in dict.fromkeys(k for d in everyone for k in d):
            seen = [d.get(name, "<not set>") for d in everyone]
            if any(s != seen[0] for s in seen[1:]):
                groups: dict[str, list[int]] = {}
                for i, s in enumerate(seen):
                    groups.setdefault(json.dumps(s), []).append(i)
                detail = "; ".join(f"{v} on process{'es' if len(p) > 1 else ''} {_ranges(p)}"
                                   for v, p in groups.items())
                problem = (f"{what} differ across the {n} processes: {name} is {detail}. Every process must run "
                           f"the same command with the same inputs")
                break
    problem = broadcast_json(problem, what=f"check_same/{what}/verdict", timeout_s=timeout_s)
    if problem:
        raise DistributedError(problem)


def _ranges(ids: Sequence[int]) -> str:
    out, start = [], None
    for i, x in enumerate(ids):
        if start is None:
            start = x
        if i + 1 == len(ids) or ids[i + 1] != x + 1:
            out.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return ",".join(out)
