"""A reader of a BPF ring buffer map (BPF_MAP_TYPE_RINGBUF) from its own memory mappings.

bcc's reader calls back into Python through ctypes once per record: ~4 µs each, which is the
whole cost of tracing ``find /usr`` (112k records; the kernel side adds 3%). Here the records
are read from the shared pages in a plain loop and handed over as bytes, a batch at a time.

The layout is the kernel's (``kernel/bpf/ringbuf.c``): page 0 holds the consumer position
(ours to write), page 1 the producer position, and the data area follows, mapped twice in a row
so that a record wrapping around the end reads as one piece. Each record starts with an 8-byte
header: its length with a busy bit (still being written: stop there) and a discard bit, then the
page offset; records are 8-byte aligned. x86-64 keeps loads in order, so reading a header after
the producer position needs no fence; the consumer position is written with one 8-byte store.
"""

from __future__ import annotations

import mmap
import select
import struct
from collections.abc import Callable

_BUSY, _DISCARD = 1 << 31, 1 << 30
_POS = struct.Struct("=Q")
_LEN = struct.Struct("=I")
_HEADER = 8


class RingBuffer:
    """Consume the records of one ring buffer map: :meth:`wait` for data, :meth:`read` it."""

    def __init__(self, map_fd: int, size: int) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"a ring buffer's size is a power of two, not {size}")
        page = mmap.PAGESIZE
        self._size = size
        self._mask = size - 1
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._data = mmap.mmap(
            map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
        )
        self._base = page  # the data area, after the producer's page
        # edge-triggered: woken by the records the program submits with BPF_RB_FORCE_WAKEUP
        # (or plain ones reaching a reader that had caught up), not by data merely being there,
        # so records sent with BPF_RB_NO_WAKEUP pile up for one batch and cost no wakeup each
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN | select.EPOLLET)

    def wait(self, timeout: float) -> None:
        """Until the program wakes the reader, or ``timeout`` seconds."""
        self._epoll.poll(timeout)

    def records(self) -> list[bytes]:
        """Every complete record, in order (one batch)."""
        batch: list[bytes] = []
        self.read(batch.append)
        return batch

    def read(self, handle: Callable[[bytes], None]) -> int:
        """Hand every complete record to ``handle``, in order; the number of records."""
        consumer = _POS.unpack_from(self._consumer, 0)[0]
        producer = _POS.unpack_from(self._data, 0)[0]
        data, base, mask = self._data, self._base, self._mask
        count = 0
        while consumer < producer:
            at = base + (consumer & mask)
            length = _LEN.unpack_from(data, at)[0]
            if length & _BUSY:
                break  # reserved, not yet submitted: everything after it waits too
            size = length & ~(_BUSY | _DISCARD)
            if not length & _DISCARD:
                handle(data[at + _HEADER : at + _HEADER + size])
                count += 1
            consumer += (size + _HEADER + 7) & ~7
            if count & 1023 == 0:  # give the producer room while a long batch goes on
                _POS.pack_into(self._consumer, 0, consumer)
        _POS.pack_into(self._consumer, 0, consumer)
        return count

    def close(self) -> None:
        self._epoll.close()
        self._consumer.close()
        self._data.close()
