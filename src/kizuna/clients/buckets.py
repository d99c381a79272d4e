"""Rate-limit buckets shared by the API's worker processes on one host.

`kizuna serve --workers N` runs N processes; with a bucket per process a client could send N
times its rate. `SharedTokenBuckets` keeps every client's bucket in one memory-mapped file that
all workers map (`kizuna serve` creates it and names it in `KIZUNA_RATE_LIMIT_FILE`): a table of
(client id, tokens, as of) slots found by open addressing, read and written under an exclusive
`lockf` of the file, a few microseconds per request. Should the table ever fill up (65,536
clients active on one host), a client without a slot is limited in its process, as before.
Several hosts still limit each on its own.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading

from kizuna.clients.domain import TokenBuckets, take_token

_SLOT = struct.Struct("<qdd")  # client id (0: free), tokens, as of (monotonic seconds)
SLOTS = 65_536
_PROBES = 64
SIZE = _SLOT.size * SLOTS


def create(path: str) -> None:
    """Make the shared file (all slots free) before the workers start."""
    with open(path, "wb") as table:
        table.truncate(SIZE)


class SharedTokenBuckets:
    """`TokenBuckets` whose buckets all worker processes share (see the module's docs)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR)
        if os.fstat(self._fd).st_size < SIZE:
            os.close(self._fd)
            raise ValueError(f"{path} is not a rate-limit table (see clients.buckets.create)")
        self._map = mmap.mmap(self._fd, SIZE)
        self._lock = threading.Lock()  # lockf excludes other processes, not this one's threads
        self._overflow = TokenBuckets()

    def retry_after(self, client_id: int, per_minute: int, now: float) -> float:
        """Take one token for `client_id`; 0 when allowed, else seconds until one is free.
        `now` is `time.monotonic()`, one clock for every process of the host."""
        with self._lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                offset = self._slot_of(client_id)
                if offset is None:
                    return self._overflow.retry_after(client_id, per_minute, now)
                held, tokens, last = _SLOT.unpack_from(self._map, offset)
                bucket, wait = take_token(
                    (tokens, last) if held == client_id else None, per_minute, now
                )
                _SLOT.pack_into(self._map, offset, client_id, *bucket)
                return wait
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _slot_of(self, client_id: int) -> int | None:
        """The offset of the client's slot, or of the free slot it takes; None if none is near."""
        for probe in range(_PROBES):
            offset = ((client_id + probe) % SLOTS) * _SLOT.size
            (held,) = struct.unpack_from("<q", self._map, offset)
            if held in (client_id, 0):
                return offset
        return None

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
