"""Write-ahead log of accepted batches of canonical events, RAW PROMPT TEXT INCLUDED.

Layout: ``<dir>/<first_seq:020d>.wal`` segment files (mode 0600 in a 0700 directory), each a
sequence of records::

    magic b"DGW2" | seq u64 | length u32 | payload crc32 u32 | header crc32 u32 | payload

(little-endian; the header checksum covers the 20 bytes before it; the payload is the Arrow IPC
stream of one batch). A record is written and ``fdatasync``-ed before its batch is acknowledged.

**Never after a torn record.** A write or sync that fails (a full disk, an I/O error) leaves at
most a partial record behind: the log truncates the segment back to its last whole record and
closes it, and the next append opens a new segment; the failed batch is not acknowledged (its
seq is not reused). A crash can tear only the record being written, never acknowledged.

**Reading skips damage.** The length framing and the two checksums let the reader skip a
damaged record and go on with the next: a payload whose checksum fails is skipped by its
length; a damaged header is skipped by searching for the next valid header. Every skipped record
(or damaged stretch) is reported in :attr:`WriteAheadLog.skipped` with its file, offset, size
and reason, and logged; the rest of the segment is replayed. Segments of the previous format
(``DGW1``, no header checksum) are still read (up to their first damaged record).

Start-up always opens a new segment, and a snapshot rotates the log so the segments it covers
can be deleted (:meth:`WriteAheadLog.delete_through`).

**Fault seam.** Every record byte goes through :func:`write_bytes` (``os.write``), looked up at
each call: a test may replace ``service.wal.write_bytes`` to make writes fail as a full disk
would (``tests/fault_injection.py`` does, in a real server process).

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
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from service.fsync import fsync_path, private_dir, private_file

log = logging.getLogger("distillguard.wal")

MAGIC = b"DGW2"
HEADER = struct.Struct("<4sQIII")  # magic, seq, payload length, payload crc32, header crc32
_HEAD_BODY = HEADER.size - 4  # the bytes the header checksum covers
MAGIC_V1 = b"DGW1"
HEADER_V1 = struct.Struct("<4sQII")  # magic, seq, payload length, payload crc32
SUFFIX = ".wal"
FILE_MODE = 0o600
PROBE_BYTES = 1 << 20  # written by a probe: room for a typical batch


def write_bytes(fd: int, data: memoryview) -> int:
    """``os.write``: the one call that writes record bytes (the module docstring's fault seam)."""
    return os.write(fd, data)


def encode_frame(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_ipc_stream(buf, compression="lz4")  # canonical: ~170 B/event, ~1 ms per 1,000
    return buf.getvalue()


def decode_frame(payload: bytes) -> pl.DataFrame:
    return pl.read_ipc_stream(io.BytesIO(payload))


def encode_record(seq: int, payload: bytes) -> bytes:
    """One record: header (with both checksums) and payload."""
    head = struct.pack("<4sQII", MAGIC, seq, len(payload), zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


@dataclass(frozen=True)
class SkippedRecord:
    """A damaged record (or stretch of bytes) the reader skipped."""

    segment: str  # file name
    offset: int  # byte offset of the damage in the segment
    size: int  # bytes skipped
    reason: str  # "checksum" | "header" | "torn"

    def __str__(self) -> str:
        what = {
            "checksum": "record whose payload checksum fails",
            "header": "damaged record header (skipped to the next valid record)",
            "torn": "incomplete record at the end of the segment",
        }[self.reason]
        return f"{self.segment} at byte {self.offset}: {what} ({self.size} bytes skipped)"


def _valid_header(buf: mmap.mmap, pos: int) -> tuple[int, int, int] | None:
    """``(seq, length, payload crc)`` of a valid record header at ``pos``, else None."""
    if pos + HEADER.size > len(buf):
        return None
    magic, seq, length, crc, head_crc = HEADER.unpack_from(buf, pos)
    if magic != MAGIC or zlib.crc32(buf[pos : pos + _HEAD_BODY]) != head_crc:
        return None
    return seq, length, crc


class WriteAheadLog:
    """Append-only, fsync-ed log of batches, numbered by a monotonically increasing ``seq``."""

    def __init__(self, directory: str | Path, *, fsync: bool = True) -> None:
        self.dir = Path(directory)
        private_dir(self.dir)
        for seg in self.segments():  # (segments of earlier versions were made 0644)
            private_file(seg)
        self.fsync = fsync
        self._fd: int | None = None
        self._segment: Path | None = None
        self._size = 0  # bytes of whole records in the open segment
        self.last_seq = 0
        self.skipped: list[SkippedRecord] = []  # damage found by replay

    # ------------------------------------------------------------------ reading
    def segments(self) -> list[Path]:
        return sorted(p for p in self.dir.iterdir() if p.name.endswith(SUFFIX))

    def replay(self, after_seq: int = 0) -> Iterator[tuple[int, pl.DataFrame]]:
        """Yield ``(seq, frame)`` for every intact record with ``seq > after_seq``, in order;
        damaged records are skipped, reported in :attr:`skipped` and logged."""
        for seg in self.segments():
            yield from self._read_segment(seg, after_seq)

    def _skip(self, seg: Path, offset: int, size: int, reason: str) -> None:
        found = SkippedRecord(seg.name, offset, size, reason)
        self.skipped.append(found)
        log.warning("write-ahead log %s: %s", self.dir, found)

    def _read_segment(self, seg: Path, after_seq: int) -> Iterator[tuple[int, pl.DataFrame]]:
        with seg.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                pos = 0
                while pos < size:
                    if buf[pos : pos + 4] == MAGIC_V1:
                        got = self._v1_record(seg, buf, pos)
                        if got is None:
                            return  # (a v1 log cannot be resynchronised)
                        seq, start, end = got
                    else:
                        head = _valid_header(buf, pos)
                        if head is None:
                            pos = self._resync(seg, buf, pos)
                            continue
                        seq, length, crc = head
                        start, end = pos + HEADER.size, pos + HEADER.size + length
                        if end > size:
                            self._skip(seg, pos, size - pos, "torn")
                            return
                        if zlib.crc32(buf[start:end]) != crc:
                            self._skip(seg, pos, end - pos, "checksum")
                            pos = end
                            continue
                    self.last_seq = max(self.last_seq, seq)
                    if seq > after_seq:
                        yield seq, decode_frame(buf[start:end])
                    pos = end

    def _resync(self, seg: Path, buf: mmap.mmap, pos: int) -> int:
        """A damaged header at ``pos``: the offset of the next valid header (or the end)."""
        size = len(buf)
        nxt = buf.find(MAGIC, pos + 1)
        while nxt != -1 and _valid_header(buf, nxt) is None:
            nxt = buf.find(MAGIC, nxt + 1)
        end = size if nxt == -1 else nxt
        torn = nxt == -1 and size - pos < HEADER.size
        self._skip(seg, pos, end - pos, "torn" if torn else "header")
        return end

    def _v1_record(self, seg: Path, buf: mmap.mmap, pos: int) -> tuple[int, int, int] | None:
        """``(seq, payload start, end)`` of an intact record of the previous format at ``pos``;
        None (reported) when it is torn or corrupt."""
        size = len(buf)
        if pos + HEADER_V1.size > size:
            self._skip(seg, pos, size - pos, "torn")
            return None
        _, seq, length, crc = HEADER_V1.unpack_from(buf, pos)
        start, end = pos + HEADER_V1.size, pos + HEADER_V1.size + length
        if end > size or zlib.crc32(buf[start:end]) != crc:
            self._skip(seg, pos, size - pos, "torn" if end > size else "checksum")
            return None
        return seq, start, end

    # ------------------------------------------------------------------ writing
    def open_segment(self) -> Path:
        """Start a new segment at ``last_seq + 1``; the current one (if any) is closed once the
        new one exists. Raises OSError (the current segment stays open) if it cannot be made."""
        path = self.dir / f"{self.last_seq + 1:020d}{SUFFIX}"
        n = 0
        while path.exists():  # a torn segment of an earlier run may already hold this name
            n += 1
            path = self.dir / f"{self.last_seq + 1:020d}.{n}{SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, FILE_MODE)
        try:
            if self.fsync:
                fsync_path(self.dir)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self.close()
        self._fd, self._segment, self._size = fd, path, 0
        return path

    def append(self, frame: pl.DataFrame | bytes) -> int:
        """Append one batch (a frame, or its :func:`encode_frame` bytes) durably; returns its
        seq. Raises OSError if it cannot be written: then no byte of it stays in the segment
        (truncated back) or the segment is closed, and the next append opens a new one."""
        if self._fd is None:
            self.open_segment()
        assert self._fd is not None
        payload = frame if isinstance(frame, bytes) else encode_frame(frame)
        seq = self.last_seq + 1
        record = memoryview(encode_record(seq, payload))
        fd = self._fd
        try:
            done = 0
            while done < len(record):
                done += write_bytes(fd, record[done:])
            if self.fsync:
                os.fdatasync(fd)
        except OSError:
            self.last_seq = seq  # a record with this seq may be on disk: never reuse it
            self._abandon()
            raise
        self._size += len(record)
        self.last_seq = seq
        return seq

    def _abandon(self) -> None:
        """A write or sync failed: cut the segment back to its whole records (best effort) and
        close it; the next append starts a new segment."""
        assert self._fd is not None and self._segment is not None
        segment, empty = self._segment, self._size == 0
        try:
            os.ftruncate(self._fd, self._size)
            if self.fsync:
                os.fdatasync(self._fd)
        except OSError as exc:  # the reader skips the torn tail
            log.error("could not truncate %s after a failed write: %s", segment, exc)
            empty = False
        self.close()
        if empty:  # no record in it: retries during a full disk leave no trail of empty files
            segment.unlink(missing_ok=True)

    def probe(self) -> None:
        """Check that the log can be written again after a failure: opens a segment if none is
        open, and writes and syncs :data:`PROBE_BYTES` to a scratch file beside the segments
        (then deletes it). Raises OSError when it cannot."""
        if self._fd is None:
            self.open_segment()
        scratch = self.dir / ".probe"
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            data = memoryview(bytes(PROBE_BYTES))
            done = 0
            while done < len(data):
                done += write_bytes(fd, data[done:])
            os.fdatasync(fd)
        finally:
            os.close(fd)
            scratch.unlink(missing_ok=True)

    def rotate(self) -> int:
        """Start a new segment; returns the last seq held by the older segments. Raises OSError
        if the new segment cannot be made (the current one stays open)."""
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

    @property
    def segment(self) -> Path | None:
        """The segment appended to (None until the first append or rotation)."""
        return self._segment

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd, self._segment, self._size = self._fd, None, None, 0
            os.close(fd)
