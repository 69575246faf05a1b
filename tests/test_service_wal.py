"""The write-ahead log and the snapshot path on real files, in-process: damaged records are
skipped and counted while the rest replays, a failed write never leaves a torn record to append
after, a failed rotation drains nothing, segments go only once a durable snapshot covers them,
and state files are private. (The same faults against a real server process:
tests/test_service_faults.py.)"""

from __future__ import annotations

import errno
import json
import os
import stat
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from detector.models import DistillScorer
from service import wal as wal_module
from service.snapshot import read_snapshot
from service.state import ScoringState
from service.wal import HEADER, HEADER_V1, MAGIC_V1, WriteAheadLog
from tests.fault_injection import unusable_dir
from tests.service_support import TEST_SEED, model_path, scenario, state_config, to_now


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    return scenario(TEST_SEED).events


@pytest.fixture(scope="module")
def model() -> DistillScorer:
    return DistillScorer.load(model_path(("capped_sum",)))


def batches(events: pl.DataFrame, n: int, size: int = 10) -> list[pl.DataFrame]:
    return [events.slice(i * size, size).select("ts", "request_id") for i in range(n)]


def write_log(path: Path, frames: list[pl.DataFrame]) -> WriteAheadLog:
    wal = WriteAheadLog(path)
    for f in frames:
        wal.append(f)
    wal.close()
    return wal


def offsets(segment: Path) -> list[int]:
    """Byte offset of each record of a segment."""
    data, out, pos = segment.read_bytes(), [], 0
    while pos < len(data):
        out.append(pos)
        pos += HEADER.size + HEADER.unpack_from(data, pos)[2]
    return out


def replayed(path: Path) -> tuple[list[int], WriteAheadLog]:
    wal = WriteAheadLog(path)
    return [seq for seq, _ in wal.replay()], wal


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_torn_tail_is_skipped_and_reported(tmp_path: Path, events: pl.DataFrame) -> None:
    frames = batches(events, 5)
    (seg,) = write_log(tmp_path, frames).segments()
    full, last = seg.read_bytes(), offsets(seg)[-1]
    for cut in (3, HEADER.size - 1, HEADER.size + 5):  # inside the header, or the payload
        seg.write_bytes(full[: last + cut])
        seqs, wal = replayed(tmp_path)
        assert seqs == [1, 2, 3, 4]
        ((skipped),) = wal.skipped
        assert skipped.reason == "torn" and (skipped.offset, skipped.size) == (last, cut)
        assert seg.name in str(skipped) and f"byte {skipped.offset}" in str(skipped)
        assert wal.last_seq == 4


def test_a_bit_flip_loses_only_its_record(tmp_path: Path, events: pl.DataFrame) -> None:
    frames = batches(events, 10)
    (seg,) = write_log(tmp_path, frames).segments()
    at = offsets(seg)
    flip(seg, at[2] + HEADER.size + 7)  # record 3's payload
    flip(seg, at[5] + 9)  # record 6's header (its seq)
    seqs, wal = replayed(tmp_path)
    assert seqs == [1, 2, 4, 5, 7, 8, 9, 10]
    assert [(s.reason, s.offset, s.size) for s in wal.skipped] == [
        ("checksum", at[2], at[3] - at[2]),
        ("header", at[5], at[6] - at[5]),  # skipped to the next valid header
    ]
    got = pl.concat([f for _, f in WriteAheadLog(tmp_path).replay()])
    want = pl.concat([f for i, f in enumerate(frames) if i not in (2, 5)])
    assert got.equals(want)


def test_a_damaged_length_is_caught_by_the_header_checksum(
    tmp_path: Path, events: pl.DataFrame
) -> None:
    frames = batches(events, 4)
    (seg,) = write_log(tmp_path, frames).segments()
    at = offsets(seg)
    flip(seg, at[1] + 12)  # record 2's length field: followed blindly, it would swallow 3 and 4
    seqs, wal = replayed(tmp_path)
    assert seqs == [1, 3, 4] and [s.reason for s in wal.skipped] == ["header"]


def test_logs_of_the_previous_format_are_still_read(tmp_path: Path, events: pl.DataFrame) -> None:
    frames = batches(events, 3)
    with (tmp_path / f"{1:020d}.wal").open("wb") as fh:
        for seq, f in enumerate(frames, 1):
            payload = wal_module.encode_frame(f)
            fh.write(HEADER_V1.pack(MAGIC_V1, seq, len(payload), zlib.crc32(payload)) + payload)
    wal = WriteAheadLog(tmp_path)
    assert [seq for seq, _ in wal.replay()] == [1, 2, 3] and not wal.skipped
    wal.open_segment()
    assert wal.append(frames[0]) == 4  # new records in the new format, after the old ones
    wal.close()
    assert replayed(tmp_path)[0] == [1, 2, 3, 4]


@contextmanager
def failing_writes(fail: Callable[[int], bool]) -> Iterator[list[int]]:
    """``service.wal.write_bytes`` failing (ENOSPC, after writing half of what it was given) on
    the calls ``fail(call number)`` picks: the module's documented fault seam."""
    real = wal_module.write_bytes
    calls: list[int] = []

    def write_bytes(fd: int, data: memoryview) -> int:
        calls.append(len(data))
        if fail(len(calls)):
            os.write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    wal_module.write_bytes = write_bytes
    try:
        yield calls
    finally:
        wal_module.write_bytes = real


def test_a_failed_write_is_cut_back_and_never_appended_after(
    tmp_path: Path, events: pl.DataFrame
) -> None:
    frames = batches(events, 6)
    wal = WriteAheadLog(tmp_path)
    assert [wal.append(f) for f in frames[:2]] == [1, 2]
    first = wal.segment
    assert first is not None
    size = first.stat().st_size
    with failing_writes(lambda n: True), pytest.raises(OSError, match="No space left"):
        wal.append(frames[2])
    assert first.stat().st_size == size  # the half-written record was cut back
    assert wal.segment is None  # ... and the segment closed: the next append starts another
    assert [wal.append(f) for f in frames[3:5]] == [4, 5]  # seq 3 is never reused
    assert wal.segment != first and len(wal.segments()) == 2
    wal.close()
    seqs, again = replayed(tmp_path)
    assert seqs == [1, 2, 4, 5] and not again.skipped


def test_a_torn_record_that_cannot_be_cut_back_stays_behind(
    tmp_path: Path, events: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = batches(events, 4)
    wal = WriteAheadLog(tmp_path)
    wal.append(frames[0])

    def no_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "truncate failed")

    monkeypatch.setattr(wal_module.os, "ftruncate", no_truncate)
    with failing_writes(lambda n: True), pytest.raises(OSError):
        wal.append(frames[1])
    monkeypatch.undo()
    wal.append(frames[2])  # in a new segment, never after the torn record
    wal.close()
    seqs, again = replayed(tmp_path)
    assert seqs == [1, 3] and [s.reason for s in again.skipped] == ["torn"]


def test_delete_through_keeps_what_a_snapshot_does_not_cover(
    tmp_path: Path, events: pl.DataFrame
) -> None:
    frames = batches(events, 6)
    wal = WriteAheadLog(tmp_path)
    wal.append(frames[0])
    wal.append(frames[1])
    assert wal.rotate() == 2
    wal.append(frames[2])
    assert wal.rotate() == 3
    wal.append(frames[3])
    assert wal.delete_through(1) == 0  # segment 1 holds seq 2 too
    assert wal.delete_through(2) == 1
    assert wal.delete_through(99) == 1  # never the open segment
    assert [p.name.split(".")[0] for p in wal.segments()] == [f"{4:020d}"]
    wal.close()


def test_state_files_are_private(
    tmp_path: Path, model: DistillScorer, events: pl.DataFrame
) -> None:
    old = os.umask(0o022)
    try:
        st = ScoringState(model, state_config(), state_dir=tmp_path / "state")
        st.restore()
        st.ingest(events.head(200))
        st.snapshot()
        st.ingest(events.slice(200, 100))
        st.close()
    finally:
        os.umask(old)
    found = list((tmp_path / "state").rglob("*"))
    assert {p.name for p in found} >= {"wal", "CURRENT", "events.parquet", "meta.json"}
    for p in [tmp_path / "state", *found]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))


def test_a_failed_rotation_drains_nothing_and_no_segment_goes_early(
    tmp_path: Path, model: DistillScorer, events: pl.DataFrame
) -> None:
    """The snapshot path on any failure: events waiting to be fingerprinted stay queued; the
    log segments that hold them stay until a durable snapshot holds them."""
    state_dir = tmp_path / "state"
    st = ScoringState(model, state_config(), state_dir=state_dir)
    st.restore()
    st.ingest(events.head(1000))
    st.snapshot()
    st.ingest(events.slice(1000, 500))  # acknowledged, queued (nobody fingerprints them here)
    assert st.n_queued == 500
    with unusable_dir(state_dir / "wal"), pytest.raises(OSError):
        st.snapshot()  # the rotation fails
    assert st.n_queued == 500 and st.n_events == 1500
    assert st.health.failing("snapshot") and "snapshot failing" in (st.health.problem or "")
    st.ingest(events.slice(1500, 500))  # the open segment still takes appends
    with unusable_dir(state_dir), pytest.raises(OSError):
        st.snapshot()  # rotation works, the snapshot's own directory cannot be made
    assert st.n_events == 2000
    assert st.wal is not None and len(st.wal.segments()) >= 2  # nothing deleted
    assert not list(state_dir.glob(".snap-*.tmp"))  # no temporary directory left
    assert read_snapshot(state_dir).events.height == 1000  # type: ignore[union-attr]
    st.snapshot()  # the storage works again
    assert st.health.problem is None
    st.close()
    back = ScoringState(model, state_config(), state_dir=state_dir)
    back.restore()
    assert back.n_events == 2000
    assert back.ingest(events.head(2000)).duplicates == 2000
    back.close()


def test_a_restore_keeps_the_window_end_behind_the_clock(
    tmp_path: Path, model: DistillScorer, events: pl.DataFrame
) -> None:
    """A snapshot whose window end is far in the future (written by a build without the bound)
    is restored with the window end bounded by now + the skew, so real events are not stale."""
    state_dir = tmp_path / "state"
    recent = to_now(events.head(400))
    st = ScoringState(model, state_config(), state_dir=state_dir)
    st.restore()
    st.ingest(recent.head(300))
    snap = st.snapshot()
    st.close()
    assert snap is not None
    meta = json.loads((snap / "meta.json").read_text())
    meta["window_end"] = "9999-12-31T23:59:59+00:00"
    (snap / "meta.json").write_text(json.dumps(meta))
    back = ScoringState(model, state_config(), state_dir=state_dir)
    back.restore()
    end = back.window_end
    assert end is not None and end <= datetime.now(UTC) + timedelta(minutes=5)
    assert back.n_events == 300
    assert back.ingest(recent.tail(100)).accepted == 100  # not "older than the window"
    back.close()
