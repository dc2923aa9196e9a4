"""The search's worker processes: one spawned process per kind of work, recycled after a fixed number of tasks.

A search keeps its own process for the model and the cutting; three kinds of work run beside it, each in one
worker process so that it neither takes the interpreter lock from the search nor leaves its memory in the
search's process (each worker is replaced after ``tasks_per_child`` tasks, so what it keeps is bounded too):

- the KB's great-expectations suite on the per-cutout statistics (:mod:`lenssearch.search.pipeline`);
- the cleaning measurements of the candidates (sep, :func:`lenssearch.search.cleaning.measure_cutouts`);
- the appending of the per-position rows to ``scores.ecsv`` (:mod:`lenssearch.search.writer`).

A worker is shared by the searches of a process (its imports are paid once) and started on first use, or ahead
of a search with :meth:`RecycledWorker.warm_up`. Spawned processes re-import the parent's ``__main__`` module: a
script without a ``__main__`` guard breaks them, and each user of a worker then does its work in its own process
instead (``BrokenProcessPool``).

A worker ends by itself when the search's process is gone (:func:`_exit_with_parent`): a search killed by a
signal it cannot handle (SIGKILL, the kernel's out-of-memory killer) would otherwise leave its workers blocked for
ever on the task queue (each worker holds both ends of that pipe, so it never reads end-of-file), with their
memory, and the named semaphores and shared-memory blocks that the resource tracker frees only once every one of
them has exited.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

import numpy as np

#: How often (seconds) a worker checks that the process that started it is still there.
PARENT_POLL_SECONDS = 0.5


def _exit_with_parent(parent: int) -> None:
    """The initializer of every worker process: a daemon thread ends the worker (``os._exit``) as soon as its
    parent, the search's process ``parent``, is gone (the worker is then re-parented: ``os.getppid()`` changes).

    The worker ignores SIGINT: Ctrl-C in a terminal reaches every process of the group, and it is the search's
    process that unwinds (its abort paths wait for the task a worker runs, then free the shared memory); a worker
    killed by it in the middle of a task printed its own traceback and could leave a block registered with the
    resource tracker (``leaked shared_memory objects`` at exit)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="lenssearch-parent-watch", daemon=True).start()


#: Held while a block is attached without tracking (see :func:`_attach`), so that a block made meanwhile by
#: another thread of the same process is tracked as it must be.
_TRACKER_LOCK = threading.Lock()


def new_shared_block(nbytes: int):
    """A new block of shared memory of ``nbytes`` (at least 1) for data handed to a worker by name.

    Its creator owns it: the block is registered with the resource tracker (which unlinks it if the search is
    killed) until :func:`free_shared_block` unlinks it.
    """
    from multiprocessing import shared_memory

    with _TRACKER_LOCK:
        return shared_memory.SharedMemory(create=True, size=max(int(nbytes), 1))


def _attach(name: str):
    """Open an existing block by name *without* registering it with the resource tracker: only its creator does
    (Python < 3.13 registered every process that opened a block, and a reader that ended while the creator
    freed the block left a registration that the tracker reported as ``leaked shared_memory objects``)."""
    from multiprocessing import resource_tracker, shared_memory

    try:
        return shared_memory.SharedMemory(name=name, track=False)  # Python >= 3.13
    except TypeError:
        pass
    with _TRACKER_LOCK:
        register = resource_tracker.register
        resource_tracker.register = lambda *args, **kwargs: None
        try:
            return shared_memory.SharedMemory(name=name)
        finally:
            resource_tracker.register = register


def free_shared_block(shm) -> None:
    """Close and unlink a block made by :func:`new_shared_block` (unmapped as soon as no view of it is left)."""
    try:
        shm.close()
    except BufferError:  # a view is still alive somewhere: unmapped when it goes
        pass
    try:
        shm.unlink()
    except FileNotFoundError:
        pass


def read_shared_block(name: str, shape: tuple[int, ...], dtype, take: Callable[[np.ndarray], Any]) -> Any:
    """``take(array)`` of the shared-memory block ``name`` seen as an array of ``shape`` and ``dtype``; ``take``
    must copy what it keeps (the block is closed on return)."""
    shm = _attach(name)
    try:
        return take(np.ndarray(shape, dtype=dtype, buffer=shm.buf))
    finally:
        shm.close()


def cancel_and_wait(futures, timeout: float = 30.0) -> None:
    """Cancel ``futures``; wait (at most ``timeout`` s) for those a worker already runs, so that no worker still
    reads a shared-memory block when it is freed."""
    from concurrent.futures import wait

    wait([f for f in futures if not f.cancel()], timeout=timeout)


class RecycledWorker:
    """One spawned worker process (a ``ProcessPoolExecutor`` of one), replaced after ``tasks_per_child`` tasks.

    Parameters
    ----------
    name
        What it does (for messages).
    tasks_per_child
        Tasks run by one process before it is replaced.
    first_task
        Run first in every new pool (its imports), so that the first real task does not wait for them;
        :attr:`ready` is its future.
    """

    def __init__(self, name: str, tasks_per_child: int, first_task: Callable[[], None] | None = None):
        self.name, self.tasks_per_child, self.first_task = name, tasks_per_child, first_task
        self._pool = None
        self.ready = None
        self._lock = threading.Lock()

    def pool(self):
        """The executor: a new one if there is none yet, or if the last one broke or was shut down."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with self._lock:
            pool = self._pool
            if pool is None or getattr(pool, "_broken", False) or getattr(pool, "_shutdown_thread", False):
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                 max_tasks_per_child=self.tasks_per_child,
                                                 initializer=_exit_with_parent, initargs=(os.getpid(),))
                self.ready = self._pool.submit(self.first_task) if self.first_task is not None else None
            return self._pool

    def warm_up(self, wait: bool = False) -> None:
        """Start the process now (and run its first task); with ``wait``, until that is done."""
        self.pool()
        if wait and self.ready is not None:
            self.ready.result()

    @property
    def broken(self) -> bool:
        return self._pool is not None and bool(getattr(self._pool, "_broken", False))

    def pids(self) -> list[int]:
        """Process ids of its live processes (for memory figures)."""
        pool = self._pool
        return list(getattr(pool, "_processes", None) or {}) if pool is not None else []
