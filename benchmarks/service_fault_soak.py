"""Kill -9 and storage-fault soak of ``distillguard serve``, run by hand (minutes; never in the
test suite)::

    python benchmarks/service_fault_soak.py [--minutes 10] [--seed 0] [--json out.json]

Trials, round-robin over the faults until the time is up; each one on a fresh state directory,
against a real server process fed acknowledged batches by a client thread (a batch counts as
acknowledged when the service answered 200 and accepted every event of it; a client retries a
refused batch, as a log shipper would):

- ``kill9``: ``kill -9`` at a random moment of the ingest;
- ``kill9_mid_snapshot``: ``kill -9`` while a snapshot is being written (its temporary
  directory exists);
- ``log_dir_unusable``: the log directory stops taking new files for 3 s mid-ingest (snapshots
  fail at their log rotation; permissions, or ``chattr +i`` for root), then ``kill -9`` after it
  recovered;
- ``disk_full``: the state directory on a small tmpfs that a ballast file fills up (where this
  process may mount one: root); otherwise the write-ahead log's documented fault seam
  (``tests/fault_injection.py``: a write puts half its bytes down, then fails with ENOSPC). The
  disk stays full for 3 s of refused batches, is freed, ingest resumes, then ``kill -9``;
- ``bit_flip``: after a ``kill -9``, one bit flipped at a random byte of a random log record
  the restart must replay;
- ``torn_tail``: after a ``kill -9``, the newest segment cut short inside its last record.

After the fault the server is restarted on the same state and every acknowledged event is
POSTed again: each one it already holds comes back as a duplicate. ``lost`` counts the
acknowledged events it does not hold, except those the fault itself destroyed (the events of
the damaged or cut record, counted apart). Prints a Markdown table (fault | tried | ... | lost)
for ``benchmarks/RESULTS.md`` and the raw trials as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.replay import to_ndjson  # noqa: E402
from service.wal import HEADER, decode_frame  # noqa: E402
from tests.fault_injection import ENOSPC_FLAG, unusable_dir  # noqa: E402

TOKEN = "soak-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NDJSON = {**AUTH, "Content-Type": "application/x-ndjson"}
BATCH = 500
FAULTS = (
    "kill9",
    "kill9_mid_snapshot",
    "log_dir_unusable",
    "disk_full",
    "bit_flip",
    "torn_tail",
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Trial:
    fault: str
    n: int
    acknowledged: int = 0
    restored: int = 0
    destroyed: int = 0  # acknowledged events whose own log bytes the fault damaged
    lost: int = 0  # acknowledged, not destroyed, not restored
    refused_batches: int = 0  # answered 503 (and retried)
    wal_records_skipped: int = 0
    method: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class Server:
    """``distillguard serve`` in a child process (``module``: another entry point)."""

    def __init__(
        self, env: dict[str, str], state: Path, log: Path, module: str | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**env, "DISTILLGUARD_PORT": str(self.port), "DISTILLGUARD_SNAPSHOT_PATH": str(state)}
        if module:
            cmd = [sys.executable, "-m", module]
        else:
            code = "from service.server import run_server; from service.settings import Settings; "
            cmd = [sys.executable, "-c", code + "run_server(Settings())"]
        with log.open("ab") as fh:
            self.proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=fh, stderr=fh)
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: see {log}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(self.url)
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


class Feeder:
    """Posts batches one after another from a client thread; records the acknowledged ones."""

    def __init__(self, url: str, batches: list[pl.DataFrame]) -> None:
        self.url = url + "/v1/events"
        self.batches = batches
        self.acked: list[pl.DataFrame] = []
        self.refused = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(headers=NDJSON, timeout=30) as c:
            for frame in self.batches:
                body = to_ndjson(frame)
                while not self.stop.is_set():
                    try:
                        r = c.post(self.url, content=body)
                    except httpx.TransportError:
                        return  # the server is gone: this batch is not acknowledged
                    if r.status_code == 200 and r.json()["accepted"] == frame.height:
                        self.acked.append(frame)
                        break
                    self.refused += 1  # 503 (storage): retry, as a log shipper would
                    time.sleep(0.1)
                if self.stop.is_set():
                    return

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


def already_there(url: str, frame: pl.DataFrame) -> int:
    held = 0
    with httpx.Client(headers=NDJSON, timeout=120) as c:
        for part in frame.iter_slices(5000):
            r = c.post(url + "/v1/events", content=to_ndjson(part))
            r.raise_for_status()
            held += int(r.json()["duplicates"])
    return held


def wait_until(check: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError, OSError):
            if check():
                return True
        time.sleep(every)
    return False


# --------------------------------------------------------------------------- log records


def snapshot_seq(state: Path) -> int:
    pointer = state / "CURRENT"
    if not pointer.exists():
        return 0
    meta = json.loads((state / pointer.read_text().strip() / "meta.json").read_text())
    return int(meta["wal_seq"])


def records(state: Path) -> list[tuple[Path, int, int, int]]:
    """``(segment, offset, size, seq)`` of every record of the log, in order."""
    out = []
    for seg in sorted((state / "wal").glob("*.wal")):
        data, pos = seg.read_bytes(), 0
        while pos + HEADER.size <= len(data):
            _, seq, length, _, _ = HEADER.unpack_from(data, pos)
            if pos + HEADER.size + length > len(data):
                break
            out.append((seg, pos, HEADER.size + length, seq))
            pos += HEADER.size + length
    return out


def ids_of(seg: Path, offset: int, size: int) -> set[str]:
    payload = seg.read_bytes()[offset + HEADER.size : offset + size]
    return set(decode_frame(payload)["request_id"].to_list())


# --------------------------------------------------------------------------- disk full


@contextlib.contextmanager
def small_tmpfs(where: Path, size_mb: int) -> Iterator[bool]:
    """Mount a tmpfs of ``size_mb`` at ``where`` if this process may (yields True), else
    yields False."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def fill(path: Path, leave_bytes: int) -> None:
    """Write a ballast file at ``path`` until the file system has ``leave_bytes`` free."""
    st = os.statvfs(path.parent)
    free = st.f_bavail * st.f_frsize
    with path.open("wb") as fh:
        left = max(0, free - leave_bytes)
        chunk = b"\0" * (1 << 20)
        while left > 0:
            fh.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))


# --------------------------------------------------------------------------- one trial


def run_trial(
    fault: str, n: int, events: pl.DataFrame, env: dict[str, str], work: Path, rng: random.Random
) -> Trial:
    t0 = time.monotonic()
    trial = Trial(fault, n)
    frame = events.with_columns(pl.col("request_id") + f"-t{n}")
    shift = datetime.now(UTC) - timedelta(minutes=1) - frame["ts"].max()  # type: ignore[operator]
    frame = frame.with_columns(pl.col("ts") + shift)
    batches = list(frame.iter_slices(BATCH))
    root = work / f"trial-{n:03d}-{fault}"
    root.mkdir()
    log = root / "server.log"
    state = root / "state"
    destroyed: set[str] = set()
    with contextlib.ExitStack() as stack:
        module = None
        extra: dict[str, str] = {}
        if fault == "disk_full":
            mounted = stack.enter_context(small_tmpfs(root / "disk", 48))
            if mounted:
                state = root / "disk" / "state"
                trial.method = "tmpfs (48 MB) filled by a ballast file"
            else:
                module = "tests.fault_injection"
                extra = {ENOSPC_FLAG: str(root / "disk-full")}
                trial.method = "fault seam (ENOSPC after a partial write)"
        srv = Server({**env, **extra}, state, log, module)
        with Feeder(srv.url, batches) as feeder:
            time.sleep(rng.uniform(0.5, 1.5))
            if fault == "kill9":
                time.sleep(rng.uniform(0, 2))
            elif fault == "kill9_mid_snapshot":
                if not wait_until(lambda: any(state.glob(".snap-*.tmp")), 20, every=0.001):
                    trial.notes.append("no snapshot in progress seen: killed anyway")
            elif fault == "log_dir_unusable":
                with unusable_dir(state / "wal"):
                    time.sleep(3)
                wait_until(lambda: httpx.get(srv.url + "/readyz").status_code == 200, 30)
                time.sleep(1)
            elif fault == "disk_full":
                if trial.method.startswith("tmpfs"):
                    ballast = root / "disk" / "ballast"
                    fill(ballast, 2 << 20)
                    time.sleep(3)
                    ballast.unlink()
                else:
                    flag = root / "disk-full"
                    flag.touch()
                    time.sleep(3)
                    flag.unlink()
                if not wait_until(lambda: httpx.get(srv.url + "/readyz").status_code == 200, 30):
                    trial.notes.append("not ready again within 30 s of freeing the disk")
                time.sleep(1.5)
            else:  # bit_flip, torn_tail: damage after the crash
                time.sleep(rng.uniform(1, 3))
            srv.kill()
        trial.acknowledged = sum(f.height for f in feeder.acked)
        trial.refused_batches = feeder.refused
        acked_ids = set(pl.concat(feeder.acked)["request_id"].to_list()) if feeder.acked else set()
        if fault in ("bit_flip", "torn_tail"):
            after = snapshot_seq(state)
            replayed = [r for r in records(state) if r[3] > after]
            if not replayed:
                trial.notes.append("no log record after the snapshot: nothing to damage")
            else:
                seg, offset, size, _ = rng.choice(replayed) if fault == "bit_flip" else replayed[-1]
                destroyed = ids_of(seg, offset, size) & acked_ids
                data = bytearray(seg.read_bytes())
                if fault == "bit_flip":
                    at = offset + rng.randrange(size)
                    data[at] ^= 1 << rng.randrange(8)
                    seg.write_bytes(bytes(data))
                else:
                    os.truncate(seg, offset + rng.randrange(1, size))
        trial.destroyed = len(destroyed)
        srv = Server(env, state, log)  # an ordinary server on the state the fault left
        try:
            trial.wal_records_skipped = int(
                httpx.get(srv.url + "/readyz").json()["wal_records_skipped"]
            )
            if feeder.acked:
                acked = pl.concat(feeder.acked)
                kept = acked.filter(~pl.col("request_id").is_in(sorted(destroyed)))
                trial.restored = already_there(srv.url, kept)
                trial.lost = kept.height - trial.restored
        finally:
            srv.kill()
    trial.seconds = round(time.monotonic() - t0, 1)
    if fault == "disk_full" and trial.refused_batches == 0:
        trial.notes.append("no batch was refused: the disk never filled")
    shutil.rmtree(root / "state", ignore_errors=True)
    return trial


def train(tmp: Path) -> Path:
    from detector.features import account_features
    from detector.models import DistillScorer
    from synthetic_logs.generate import generate

    feats = account_features(generate("demo", seed=1, scale=0.5).events).collect()
    with warnings.catch_warnings():  # account_age_days is all-null without an account table
        warnings.simplefilter("ignore", RuntimeWarning)
        model = DistillScorer(target_fpr=0.02, detectors=("capped_sum",)).fit(feats)
    return model.save(tmp / "model.joblib")


def report(trials: list[Trial], minutes: float) -> str:
    lines = [
        f"Fault soak (`python benchmarks/service_fault_soak.py --minutes {minutes:g}`), "
        f"{platform.node()} ({os.cpu_count()} cores), {datetime.now(UTC):%Y-%m-%d}: "
        f"{len(trials)} trials, each a fresh state and a real server process.",
        "",
        "| fault | tried | acknowledged | restored | destroyed by the fault | lost |",
        "|---|---|---|---|---|---|",
    ]
    for fault in FAULTS:
        mine = [t for t in trials if t.fault == fault]
        if not mine:
            continue
        lines.append(
            f"| {fault} | {len(mine)} | {sum(t.acknowledged for t in mine):,} | "
            f"{sum(t.restored for t in mine):,} | {sum(t.destroyed for t in mine):,} | "
            f"{sum(t.lost for t in mine):,} |"
        )
    methods = sorted({t.method for t in trials if t.method})
    if methods:
        lines += ["", "disk_full by: " + "; ".join(methods)]
    notes = [f"{t.fault} #{t.n}: {note}" for t in trials for note in t.notes]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="time budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the trials here")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    from synthetic_logs.generate import generate

    work = Path(tempfile.mkdtemp(prefix="dg-soak-"))
    model = train(work)
    events = generate("demo", seed=3, scale=1.5).events.sort("ts").head(150_000)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DISTILLGUARD_MODEL_PATH": str(model),
        "DISTILLGUARD_INGEST_TOKENS": TOKEN,
        "DISTILLGUARD_READ_TOKENS": TOKEN,
        "DISTILLGUARD_SNAPSHOT_INTERVAL_S": "1",
        "DISTILLGUARD_RESCORE_INTERVAL_S": "0.5",
        "DISTILLGUARD_CAMPAIGNS": "false",
        "DISTILLGUARD_LOG_LEVEL": "warning",
    }
    trials: list[Trial] = []
    deadline = time.monotonic() + 60 * args.minutes
    n = 0
    while time.monotonic() < deadline:
        fault = FAULTS[n % len(FAULTS)]
        trial = run_trial(fault, n, events, env, work, rng)
        print(json.dumps(asdict(trial)), flush=True)
        trials.append(trial)
        n += 1
    print(report(trials, args.minutes))
    if args.json:
        args.json.write_text(json.dumps([asdict(t) for t in trials], indent=2) + "\n")
    print(f"(logs in {work})", file=sys.stderr)


if __name__ == "__main__":
    main()
