"""The model thread: every task on one thread, urgent work before background work and inside its pauses,
cancellation, errors handed back, and direct callers kept out while a task runs."""

import asyncio
import threading
import time

import pytest

from loomwork.engine.model_thread import ModelThread
from loomwork.errors import Cancelled


def test_tasks_run_on_one_thread_and_errors_come_back():
    mt = ModelThread("test-model")
    names = {mt.run(lambda: threading.current_thread().name) for _ in range(5)}
    assert names == {"test-model"}
    assert mt.run(lambda: mt.run(lambda: 7) + 1) == 8  # work that hands more over runs it at once

    def fail():
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        mt.run(fail)
    assert mt.run(lambda: "still working") == "still working"


def test_urgent_work_runs_inside_a_background_task_pause():
    mt, order, started = ModelThread(), [], threading.Event()

    def background():
        with mt.background() as held:
            for chunk in range(5):
                order.append(f"chunk{chunk}")
                started.set()
                time.sleep(0.05)
                held.pause_if_wanted()
        return "scored"

    bg = mt.submit(background, urgent=False)
    started.wait(5)
    assert mt.run(lambda: order.append("urgent") or "expanded") == "expanded"  # waits at most one chunk
    assert bg.result(5) == "scored"
    assert order.index("urgent") <= 2 and order[-1] == "chunk4"


def test_queued_urgent_work_goes_before_queued_background_work():
    mt, order, gate = ModelThread(), [], threading.Event()
    first = mt.submit(gate.wait)  # holds the thread while the rest queue up
    later = [mt.submit(lambda: order.append("background"), urgent=False),
             mt.submit(lambda: order.append("urgent"))]
    gate.set()
    for f in [first, *later]:
        f.result(5)
    assert order == ["urgent", "background"]


def test_cancelled_background_work_stops():
    mt, cancel = ModelThread(), threading.Event()
    cancel.set()

    def background():
        with mt.background(cancel):
            return "ran"

    with pytest.raises(Cancelled):
        mt.run(background, urgent=False)

    def chunks():
        with mt.background(cancel2) as held:
            cancel2.set()
            held.pause_if_wanted(cancel2)
            return "not reached"

    cancel2 = threading.Event()
    with pytest.raises(Cancelled):
        mt.run(chunks, urgent=False)


def test_a_direct_caller_waits_for_the_running_task():
    mt, inside, release, order = ModelThread(), threading.Event(), threading.Event(), []

    def task():
        with mt.urgent():
            inside.set()
            release.wait(5)
            order.append("task")

    running = mt.submit(task)
    inside.wait(5)

    def direct():
        with mt.urgent():
            order.append("direct")

    caller = threading.Thread(target=direct)
    caller.start()
    time.sleep(0.1)
    assert order == []  # the direct caller waits
    release.set()
    running.result(5)
    caller.join(5)
    assert order == ["task", "direct"]


async def test_async_callers_do_not_block_the_event_loop():
    mt = ModelThread()
    ticks = []

    async def tick():
        for _ in range(5):
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    result, _ = await asyncio.gather(mt.call(lambda: time.sleep(0.1) or 42), tick())
    assert result == 42 and len(ticks) == 5


def test_a_forked_child_gets_a_model_thread_of_its_own():
    import os

    mt = ModelThread()
    assert mt.run(lambda: 1) == 1
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread did not come along
        try:
            os._exit(0 if mt.submit(lambda: 2).result(10) == 2 else 1)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert mt.run(lambda: 3) == 3


def test_drain_drops_queued_work_and_waits_for_the_task_under_way():
    mt, gate, done = ModelThread(), threading.Event(), []
    running = mt.submit(lambda: gate.wait(5) and done.append("ran"))
    queued = mt.submit(lambda: done.append("queued"))
    time.sleep(0.05)
    assert not mt.drain(0.05)  # the task under way holds on
    threading.Timer(0.1, gate.set).start()
    assert mt.drain(5)
    assert running.result(1) is None and queued.cancelled() and done == ["ran"]
