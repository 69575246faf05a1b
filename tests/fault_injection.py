"""Storage faults for the fault tests, on real files and in real server processes. Not a test
module.

- :func:`unusable_dir`: a directory in which no entry can be created or removed (files already
  open stay writable), as when a volume turns read-only or its permissions change: mode 0500
  for an ordinary user; for root, who ignores permissions, the immutable attribute
  (``chattr +i``), or where the file system has none, the directory moved aside with a plain
  file left in its place.
- A full disk: ``python -m tests.fault_injection`` runs ``run_server(Settings())`` (settings
  from the environment, as ``distillguard serve``) with the write-ahead log's documented fault
  seam (``service.wal.write_bytes``) replaced: while the file named by ``$DG_FAULT_ENOSPC``
  exists, each write puts half its bytes on disk and then fails with ENOSPC, as a filling disk
  does. The server is otherwise untouched; killing it (``kill -9``) is a real crash.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service import wal

ENOSPC_FLAG = "DG_FAULT_ENOSPC"


def _chattr(flag: str, path: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", flag, str(path)], capture_output=True, check=False)
    return done.returncode == 0


def _cannot_create_in(path: Path) -> bool:
    probe = path / ".fault-probe"
    try:
        probe.mkdir()
    except OSError:
        return True
    probe.rmdir()
    return False


@contextmanager
def unusable_dir(path: Path) -> Iterator[None]:
    """Within the block, nothing can be created in or removed from ``path``."""
    if os.geteuid() != 0:
        mode = stat.S_IMODE(path.stat().st_mode)
        path.chmod(0o500)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if _chattr("+i", path):
        try:
            assert _cannot_create_in(path)
            yield
        finally:
            _chattr("-i", path)
        return
    aside = path.with_name(path.name + ".aside")
    path.rename(aside)
    path.write_text("in the way\n")
    try:
        yield
    finally:
        path.unlink()
        aside.rename(path)


def install_enospc(flag: Path) -> None:
    """Make the log's writes fail as on a full disk while ``flag`` exists."""
    real = wal.write_bytes

    def write_bytes(fd: int, data: memoryview) -> int:
        if flag.exists():
            half = len(data) // 2
            if half:
                os.write(fd, data[:half])  # a full disk takes what fits, then refuses
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    wal.write_bytes = write_bytes


def main() -> None:
    from service.server import run_server
    from service.settings import Settings

    install_enospc(Path(os.environ[ENOSPC_FLAG]))
    run_server(Settings())  # type: ignore[call-arg]


if __name__ == "__main__":
    main()
