"""Per-file work shared out to worker processes forked from the run.

The work is cut into contiguous runs of files (configs of one directory share their bases and
their classes, which a worker then resolves and probes once; interleaved chunks had every worker
probe nearly every class), several runs per worker, handed out as workers free up so that one slow
directory does not leave the other cores idle.  A worker keeps what it resolved and probed from one
run to the next.

Forking is only safe before this process has started threads or run torch's CPU kernels (an
OpenMP pool): a forked child can deadlock on a lock held by a thread that does not exist in it.
Without an explicit ``jobs`` such a process (a library caller's) does the work itself; with it,
the workers pin torch to one thread and the parent keeps a deadline, past which it does the rest
itself.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from typing import Any, Callable, TypeVar

PER_WORKER = 64  # fewer files than this per worker process cost more to fork than they save
CHUNKS_PER_WORKER = 8  # more runs per worker: finer progress and balance, at one message each

Item = TypeVar("Item")
Answer = TypeVar("Answer")


def default_jobs() -> int:
    """One worker per usable core, where forking is safe: before torch is imported here (a CLI run
    leaves torch to the workers that probe classes)."""
    if "torch" in sys.modules or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_count(items: int, jobs: int | None) -> int:
    """How many workers ``items`` are worth (1: do it here)."""
    return max(1, min(jobs or default_jobs(), items // PER_WORKER))


def patience(items: int) -> float:
    """Seconds to wait for ``items`` files to come back from a worker: generous (a cold probe of a
    large backbone takes seconds), but a worker that died or hung must not hang the run."""
    return 120 + 2.0 * items


def share_out(items: list[Item], work: Callable[[list[Item]], Answer], workers: int,
              on_done: Callable[[list[Item], Answer], None], stall: float | None = None) -> list[Item]:
    """``work(run)`` on contiguous runs of ``items`` in ``workers`` forked processes; ``on_done(run,
    answer)`` in this process as each run comes back.  When no run comes back for ``stall`` seconds
    (by default the ``patience`` for one run: a worker killed by the system loses its run without a
    word), the workers are stopped and the items of the runs still out are returned, for the caller
    to do itself."""
    size = -(-len(items) // (workers * CHUNKS_PER_WORKER))
    runs = [items[i:i + size] for i in range(0, len(items), size)]
    global _WORK
    _WORK = work
    pending = dict(enumerate(runs))
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=_leave_ctrl_c_to_the_parent)
    try:
        answers = pool.imap_unordered(_run_forked, list(pending.items()))
        while pending:
            index, answer = answers.next(timeout=stall if stall is not None else patience(size))
            on_done(pending.pop(index), answer)
    except multiprocessing.TimeoutError:
        pass
    finally:
        pool.terminate()
        pool.join()
        _WORK = None
    return [item for run in pending.values() for item in run]


_WORK: Any = None  # the work of the current share_out, inherited by its forked workers


def _leave_ctrl_c_to_the_parent() -> None:
    # Ctrl-C reaches every process of the terminal's group: the parent stops the workers itself,
    # and a worker's own KeyboardInterrupt would only print its traceback over the user's terminal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_forked(indexed: tuple[int, list]) -> tuple[int, Any]:
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)  # one core per worker; no OpenMP region in a forked child
    index, run = indexed
    return index, _WORK(run)
