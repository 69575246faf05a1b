"""Write-ahead log of accepted batches of canonical events, RAW PROMPT TEXT INCLUDED.

Layout: ``<dir>/<first_seq:020d>.wal`` segment files, each a sequence of records::

    magic b"DGW1" | seq u64 | length u32 | crc32 u32 | payload (Arrow IPC stream of one batch)

A record is appended and ``fsync``-ed before the batch is acknowledged. A crash can tear only the
record being written (never acknowledged): reading stops at the first short or corrupt record of
a segment and continues with the next one. Start-up always opens a new segment, and a snapshot
rotates the log so the segments it covers can be deleted.

Privacy: a batch is logged as it was accepted (canonical events, ``prompt`` and
``system_prompt`` included) so that fingerprinting can run after the acknowledgement, off the
request path; the service fingerprints the log's events again when it replays it. The raw text
on disk is therefore bounded by the snapshot interval: each snapshot (compact events only)
deletes the segments it covers. Logs written by earlier versions hold compact events; replay
takes both.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import polars as pl

from service.fsync import fsync_path, sync_data

log = logging.getLogger("distillguard.wal")

MAGIC = b"DGW1"
HEADER = struct.Struct("<4sQII")  # magic, seq, payload length, crc32
SUFFIX = ".wal"


def encode_frame(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_ipc_stream(buf, compression="lz4")  # canonical: ~170 B/event, ~1 ms per 1,000
    return buf.getvalue()


def decode_frame(payload: bytes) -> pl.DataFrame:
    return pl.read_ipc_stream(io.BytesIO(payload))


class WriteAheadLog:
    """Append-only, fsync-ed log of batches, numbered by a monotonically increasing ``seq``."""

    def __init__(self, directory: str | Path, *, fsync: bool = True) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._fh: BinaryIO | None = None
        self._segment: Path | None = None
        self.last_seq = 0

    # ------------------------------------------------------------------ reading
    def segments(self) -> list[Path]:
        return sorted(p for p in self.dir.iterdir() if p.name.endswith(SUFFIX))

    def replay(self, after_seq: int = 0) -> Iterator[tuple[int, pl.DataFrame]]:
        """Yield ``(seq, frame)`` for every intact record with ``seq > after_seq``, in order."""
        for seg in self.segments():
            yield from self._read_segment(seg, after_seq)

    def _read_segment(self, seg: Path, after_seq: int) -> Iterator[tuple[int, pl.DataFrame]]:
        with seg.open("rb") as fh:
            offset = 0
            while True:
                head = fh.read(HEADER.size)
                if not head:
                    return
                if len(head) < HEADER.size:
                    log.warning("%s: torn record header at byte %d (ignored)", seg, offset)
                    return
                magic, seq, length, crc = HEADER.unpack(head)
                payload = fh.read(length) if magic == MAGIC else b""
                if magic != MAGIC or len(payload) < length or zlib.crc32(payload) != crc:
                    log.warning("%s: torn or corrupt record at byte %d (ignored)", seg, offset)
                    return
                offset += HEADER.size + length
                self.last_seq = max(self.last_seq, seq)
                if seq > after_seq:
                    yield seq, decode_frame(payload)

    # ------------------------------------------------------------------ writing
    def open_segment(self) -> Path:
        """Close the current segment (if any) and start a new one at ``last_seq + 1``."""
        self.close()
        path = self.dir / f"{self.last_seq + 1:020d}{SUFFIX}"
        n = 0
        while path.exists():  # a torn segment of an earlier run may already hold this name
            n += 1
            path = self.dir / f"{self.last_seq + 1:020d}.{n}{SUFFIX}"
        self._fh = path.open("ab")
        self._segment = path
        if self.fsync:
            fsync_path(self.dir)
        return path

    def append(self, frame: pl.DataFrame | bytes) -> int:
        """Append one batch (a frame, or its :func:`encode_frame` bytes) durably; returns its
        seq. Raises OSError if it cannot be written."""
        if self._fh is None:
            self.open_segment()
        assert self._fh is not None
        payload = frame if isinstance(frame, bytes) else encode_frame(frame)
        seq = self.last_seq + 1
        self._fh.write(HEADER.pack(MAGIC, seq, len(payload), zlib.crc32(payload)) + payload)
        if self.fsync:
            sync_data(self._fh)
        else:
            self._fh.flush()
        self.last_seq = seq
        return seq

    def rotate(self) -> int:
        """Start a new segment; returns the last seq held by the older segments."""
        last = self.last_seq
        self.open_segment()
        return last

    def delete_through(self, seq: int) -> int:
        """Delete whole segments whose records all have ``seq <= seq`` (never the open one)."""
        segs = self.segments()
        removed = 0
        for seg, nxt in zip(segs, [*segs[1:], None], strict=True):
            if seg == self._segment or nxt is None:
                continue
            first_of_next = int(nxt.name.split(".")[0])
            if first_of_next - 1 <= seq:
                seg.unlink(missing_ok=True)
                removed += 1
        if removed and self.fsync:
            fsync_path(self.dir)
        return removed

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._segment = None
