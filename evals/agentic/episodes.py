"""Running episodes inside a sweep: requests whose task has a ``runner`` go to that runner's episode function on a
thread pool; the rest go to the backend as usual. Results stream back in completion order, as `Backend.complete_many`
promises, so the sweep records and grades each episode as it ends."""
from __future__ import annotations

import itertools
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Iterable, Iterator

from evals.backends.base import Backend, Request, Result

EpisodeFn = Callable[[Backend, Backend | None, Request], Result]


def runners() -> dict[str, EpisodeFn]:
    from evals.agentic import swebench, taubench  # noqa: PLC0415

    return {"taubench": taubench.run_episode, "swebench": swebench.run_episode}


def complete_episodes(backend: Backend, user_backend: Backend | None, requests: Iterable[Request],
                      workers: int) -> Iterator[tuple[str, Result]]:
    """Each request's ``metadata['runner']`` names its episode function; an episode that raises is a failed
    Result (one bad episode never ends the sweep)."""
    fns = runners()

    def one(req: Request) -> Result:
        try:
            return fns[req.metadata["runner"]](backend, user_backend, req)
        except Exception as e:  # noqa: BLE001 - the record says what happened
            return Result.failure(f"episode failed: {type(e).__name__}: {e}")

    it = iter(requests)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="episode") as pool:
        pending: dict[Future, Request] = {pool.submit(one, r): r for r in itertools.islice(it, workers * 2)}
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for f in done:
                r = pending.pop(f)
                yield r.id, f.result()
                nxt = next(it, None)
                if nxt is not None:
                    pending[pool.submit(one, nxt)] = nxt


def episode_workers(backend: Backend) -> int:
    """The local engine is driven by one thread; an endpoint takes as many episodes as its concurrency."""
    if backend.bills_device_time:
        return 1
    config = getattr(backend, "config", None)
    return max(1, getattr(config, "concurrency", 4))
