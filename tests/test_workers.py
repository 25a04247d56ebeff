"""Work shared out to forked workers: every item comes back once, in contiguous runs, from more
than one process, and what no worker finished in time is handed back to the caller."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from freezefix.engine.workers import PER_WORKER, share_out, worker_count

NEEDS_STACK = False


def _squares(run: list[int]) -> tuple[int, list[int]]:
    time.sleep(0.02)  # long enough for the second worker to take runs too
    return os.getpid(), [x * x for x in run]


def test_every_item_comes_back_once_in_contiguous_runs_from_each_worker():
    items = list(range(300))
    runs, pids, squares = [], set(), {}

    def done(run, answer):
        pid, values = answer
        runs.append(run)
        pids.add(pid)
        squares.update(zip(run, values))

    left = share_out(items, _squares, 2, done)
    assert left == []
    assert squares == {x: x * x for x in items}
    assert sorted(x for run in runs for x in run) == items  # none twice
    assert all(run == list(range(run[0], run[0] + len(run))) for run in runs)
    assert len(runs) > 2 and len(pids) == 2 and os.getpid() not in pids


def _stuck_on_zero(run: list[int]) -> list[int]:
    if 0 in run:
        time.sleep(30)
    return run


def test_runs_not_back_by_the_timeout_are_handed_back_and_the_workers_stopped():
    items = list(range(200))
    done_items: list[int] = []
    start = time.monotonic()
    left = share_out(items, _stuck_on_zero, 2, lambda run, answer: done_items.extend(answer), stall=3)
    assert time.monotonic() - start < 20  # not the 30 s the stuck worker sleeps
    assert 0 in left and sorted(left + done_items) == items
    assert left == list(range(len(left)))  # the stuck run: the first contiguous one


def _killed_on_zero(run: list[int]) -> list[int]:
    if 0 in run:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer ends a process: no word back
    return run


def test_a_worker_killed_mid_run_hands_its_run_back_after_the_stall():
    done_items: list[int] = []
    start = time.monotonic()
    left = share_out(list(range(200)), _killed_on_zero, 2, lambda run, answer: done_items.extend(answer), stall=3)
    assert time.monotonic() - start < 20
    assert left == list(range(len(left))) and sorted(left + done_items) == list(range(200))


def test_small_runs_are_not_worth_a_worker():
    assert worker_count(2 * PER_WORKER - 1, jobs=8) == 1
    assert worker_count(2 * PER_WORKER, jobs=8) == 2
    assert worker_count(100 * PER_WORKER, jobs=3) == 3
    assert worker_count(100 * PER_WORKER, jobs=1) == 1


_INTERRUPTED = """
import time
from freezefix.engine.workers import share_out

def slow(run):
    time.sleep(30)
    return run

print("started", flush=True)
share_out(list(range(200)), slow, 2, lambda run, answer: None)
"""


def test_ctrl_c_stops_the_run_and_its_workers_quietly():
    # Ctrl-C on a terminal signals its whole process group: the parent and every worker.
    proc = subprocess.Popen([sys.executable, "-c", _INTERRUPTED], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert proc.stdout.readline() == "started\n"
    time.sleep(1.0)  # the workers are forked and sleeping in their runs
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert "ForkPoolWorker" not in err, err  # no worker printed its own interruption
