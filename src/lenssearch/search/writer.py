"""Writing the search's per-position catalogue (``scores.ecsv``) chunk by chunk, in a worker process.

A search appends one chunk of rows to ``scores.ecsv`` after another (:class:`EcsvAppender`: astropy's ECSV writer,
so the file is exactly what one ``Table.write`` of every row would give). Formatting text makes a Python object
of every cell, and done in the search's own process that churn left its resident memory growing with the field
(measured with a numpy-only model and no great-expectations pass: ~100 bytes per position, and ~4 when the rows
were not formatted). :class:`ScoresWriter` therefore hands each chunk to one spawned worker process that appends
it to the file, replaced after :data:`WRITER_TASKS_PER_CHILD` chunks so that what it keeps does not build up
either; the search process only pickles the chunk's arrays.

The worker appends in order (one worker, tasks run first in, first out) and returns the file's size after each
chunk. If the worker cannot run (a script without a ``__main__`` guard, which a spawned process re-imports) or dies
(killed), the file is cut back to the size of the last chunk known to be complete and the chunks not yet known
to be written are written in this process, as is everything after: the output is the same either way.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from astropy.table import Table

from lenssearch.search.workers import RecycledWorker

#: Rows per call of astropy's ECSV writer: it holds every line of its input in memory.
WRITE_CHUNK_ROWS = 5000

#: Chunks appended by one writer process before it is replaced (with 16384-row chunks, ~260 000 rows).
WRITER_TASKS_PER_CHILD = 16

#: Chunks handed to the writer and not yet written, at most (each holds its rows' arrays).
MAX_PENDING = 2


class EcsvAppender:
    """Append tables with the same columns to one open ECSV file: the header of the first, the rows of every one.

    Each table is formatted by astropy's ECSV writer, ``chunk_rows`` rows at a time, so the file is exactly what
    one ``Table.write`` of all the rows would give, while memory holds one chunk. ``meta`` (kept by reference, so
    it may be completed until the first table is written) goes into the header.
    """

    def __init__(self, fh, meta: dict | None = None, chunk_rows: int = WRITE_CHUNK_ROWS):
        self.fh, self.meta, self.chunk_rows = fh, meta if meta is not None else {}, chunk_rows
        self.header_written = False

    def write(self, table: Table) -> None:
        table.meta.update(self.meta)
        for start in range(0, max(len(table), 1), self.chunk_rows):
            if self.header_written and start >= len(table):
                return
            buf = io.StringIO()
            table[start : start + self.chunk_rows].write(buf, format="ascii.ecsv")
            text = buf.getvalue()
            if self.header_written:
                lines = text.splitlines(keepends=True)
                first_data = next(i for i, line in enumerate(lines) if not line.startswith("#")) + 1
                text = "".join(lines[first_data:])
            self.fh.write(text)
            self.header_written = True
        self.fh.flush()  # on disk as it goes (under a temporary name): nothing waits in memory


def append_ecsv(path: str, table: Table, meta: dict, header: bool, chunk_rows: int = WRITE_CHUNK_ROWS) -> int:
    """Append ``table`` to the ECSV file ``path`` (with the header if ``header``); return the file's size after.

    The writer process's task (:class:`ScoresWriter`); also its in-process fallback.
    """
    with open(path, "a") as fh:
        appender = EcsvAppender(fh, meta, chunk_rows)
        appender.header_written = not header
        appender.write(table)  # flushed
        return os.fstat(fh.fileno()).st_size


#: The writer process (shared by the searches of this process).
WORKER = RecycledWorker("catalogue writer", WRITER_TASKS_PER_CHILD)


class ScoresWriter:
    """Append tables of the same columns to the ECSV file ``path`` (created empty now) through the writer process.

    ``meta`` is copied into each table's header when it is handed over (complete it before the first
    :meth:`write`). Call :meth:`finish` before using the file: it waits for every chunk. :meth:`abort` (after a
    failure) drops the chunks not started and waits for the one being written, so that nothing is appended to the
    file once the caller has removed it.

    Parameters
    ----------
    use_process
        False: write in this process (the fallback's path, from the start).
    """

    def __init__(self, path: str | Path, meta: dict | None = None, chunk_rows: int = WRITE_CHUNK_ROWS,
                 use_process: bool = True):
        self.path, self.meta, self.chunk_rows = str(path), meta if meta is not None else {}, chunk_rows
        Path(self.path).write_text("")
        self.size = 0  # bytes of the file known to be complete
        self.pending: list[tuple[object, Table]] = []
        self.pool = WORKER.pool() if use_process else None

    def write(self, table: Table) -> None:
        from concurrent.futures.process import BrokenProcessPool

        while self.pool is not None and len(self.pending) >= MAX_PENDING:
            self._wait_first()
        if self.pool is not None:
            header = self.size == 0 and not self.pending  # the first table: nothing written, nothing on its way
            try:
                future = self.pool.submit(append_ecsv, self.path, table, dict(self.meta), header, self.chunk_rows)
            except BrokenProcessPool:
                self._fall_back()
            else:
                self.pending.append((future, table))
                return
        self.size = append_ecsv(self.path, table, dict(self.meta), self.size == 0, self.chunk_rows)

    def _wait_first(self) -> None:
        from concurrent.futures.process import BrokenProcessPool

        future, _ = self.pending[0]
        try:
            self.size = future.result()
        except BrokenProcessPool:
            self._fall_back()
            return
        self.pending.pop(0)

    def _fall_back(self) -> None:
        """The worker could not run or died: cut the file back to its last complete chunk, write the chunks not
        known to be written here, and every later one."""
        self.pool = None
        with open(self.path, "r+") as fh:
            fh.truncate(self.size)
        pending, self.pending = self.pending, []
        for future, table in pending:
            future.cancel()
            self.size = append_ecsv(self.path, table, dict(self.meta), self.size == 0, self.chunk_rows)

    def finish(self) -> None:
        """Wait until every chunk is in the file."""
        while self.pending:
            self._wait_first()

    def abort(self) -> None:
        """Drop the chunks not started; wait (a minute at most) for the one being written."""
        from concurrent.futures import wait

        for future, _ in self.pending:
            future.cancel()
        wait([f for f, _ in self.pending if not f.cancelled()], timeout=60.0)
        self.pending = []
