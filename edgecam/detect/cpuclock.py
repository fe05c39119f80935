"""How much CPU the calling thread got, and how long it waited for one: tells CPU contention apart from a
model that is simply slow, for the model ladder.

The scheduler's own accounting (``/proc/thread-self/schedstat``: nanoseconds on a CPU, nanoseconds
runnable but waiting for a CPU) counts only involuntary waiting. A thread that sleeps on purpose — the
interpreter's calling thread waiting for its worker threads at the end of each op — is not waiting for
a CPU, so a multi-threaded invoke on an idle box reads as no contention. Where the kernel does not expose
schedstat, the thread's CPU time is all there is, and the caller falls back to wall time.
"""

from __future__ import annotations

import os
import threading
import time
from typing import NamedTuple

SCHEDSTAT = "/proc/thread-self/schedstat"


class ThreadTimes(NamedTuple):
    cpu_s: float  # on a CPU
    wait_s: float | None  # runnable, waiting for a CPU (None: not exposed by this kernel)


class _Handle:
    """One open schedstat file per thread (it names the thread that opened it); closed with the thread."""

    def __init__(self) -> None:
        try:
            self.fd: int | None = os.open(SCHEDSTAT, os.O_RDONLY)
        except OSError:
            self.fd = None

    def __del__(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


class ThreadClock:
    """``read()`` returns the calling thread's times; each thread gets its own handle."""

    def __init__(self) -> None:
        self._local = threading.local()

    def read(self) -> ThreadTimes:
        handle = getattr(self._local, "handle", None)
        if handle is None:
            handle = self._local.handle = _Handle()
        if handle.fd is not None:
            try:
                on_cpu, waiting = os.pread(handle.fd, 128, 0).split()[:2]
                return ThreadTimes(int(on_cpu) / 1e9, int(waiting) / 1e9)
            except (OSError, ValueError):
                os.close(handle.fd)
                handle.fd = None
        return ThreadTimes(time.thread_time(), None)


def contention(runnable_ms: float, cpu_ms: float) -> float:
    """How much longer the thread wanted a CPU than it had one: 1.0 = a core to itself."""
    return max(1.0, runnable_ms / cpu_ms) if cpu_ms > 0 else 1.0
