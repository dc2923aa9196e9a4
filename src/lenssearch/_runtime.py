"""Process-wide runtime settings applied when a command starts (never at import time).

- :func:`apply_offline_env`: no telemetry, nothing downloaded, quiet TensorFlow.
- :func:`filter_stderr`: when the standard error is not a terminal (``make run > log``, a batch job), each
  progress-bar update becomes one plain line (no carriage returns or cursor escapes, no repeats) and the C++ log
  lines of TensorFlow/XLA/absl (``I0000 ...``, ``E0000 ... remapper failed``, "All log messages before
  absl::InitializeLog()"), which bypass Python and read as errors, are dropped. ``LENSSEARCH_RAW_STDERR=1`` keeps
  the raw stream.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

OFFLINE_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "HF_HUB_OFFLINE": "1",
}

#: A glog/absl line ("E0000 00:00:1796474577.343408   16126 meta_optimizer.cc:967] ...") or absl's preamble.
TF_NOISE = re.compile(
    rb"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ [\w.\-/]+:\d+\]|WARNING: All log messages before absl::InitializeLog)"
)
#: Line breaks of a terminal stream: newline, carriage return, and ANSI escape sequences (tqdm's cursor moves).
_BREAKS = re.compile(rb"\r|\n|\x1b\[[0-9;?]*[A-Za-z]")


def apply_offline_env() -> None:
    """Switch off telemetry and downloads for this process and its children (user settings win)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


class LineFilter:
    """Turns a terminal byte stream into log lines: one per progress update, TensorFlow C++ noise dropped."""

    def __init__(self, write):
        self.write = write
        self.pending = b""
        self.last = b""

    def feed(self, data: bytes) -> None:
        parts = _BREAKS.split(self.pending + data)
        self.pending = parts.pop()  # an unfinished segment waits for its break
        for part in parts:
            self._emit(part)

    def close(self) -> None:
        if self.pending:
            self._emit(self.pending)
            self.pending = b""

    def _emit(self, segment: bytes) -> None:
        line = segment.rstrip()
        if not line.strip() or TF_NOISE.match(line.lstrip()) or line == self.last:
            return
        self.last = line
        self.write(line + b"\n")


_installed: list = []


def filter_stderr() -> bool:
    """Filter this process's standard error (file descriptor 2) through :class:`LineFilter` when it is not a
    terminal; returns whether the filter is installed. A no-op inside a test runner that replaced
    ``sys.stderr``, on a terminal, or with ``LENSSEARCH_RAW_STDERR=1``."""
    if _installed or os.environ.get("LENSSEARCH_RAW_STDERR") == "1" or sys.stderr is not sys.__stderr__:
        return False
    try:
        if os.isatty(2):
            return False
        sys.stderr.flush()
        original = os.dup(2)
    except (OSError, ValueError):
        return False
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    line_filter = LineFilter(lambda b: os.write(original, b))

    def pump():
        while True:
            try:
                chunk = os.read(read_end, 65536)
            except OSError:
                break
            if not chunk:
                break
            line_filter.feed(chunk)
        line_filter.close()
        os.close(read_end)

    thread = threading.Thread(target=pump, name="lenssearch-stderr", daemon=True)
    thread.start()

    def restore():
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(original, 2)  # closes our write end of the pipe: the pump reads to the end
        thread.join(timeout=5)

    atexit.register(restore)
    _installed.append(thread)
    return True
