"""The Spark session the engine runs on.

In order: an active session of this process (a notebook's: its settings are the user's),
``SPARK_REMOTE`` (Spark Connect; PySpark's builder reads it), the master and settings of
``spark-submit`` when it started this process, else a new session on ``master``
(``local[*]`` by default: every core of this machine). A local master gets this interpreter
as the Python of its workers, so that they import the same distillguard and libraries as the
driver.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[*]"
# Arrow batches handed to Python workers (fingerprinting runs one polars query per batch)
ARROW_BATCH_ROWS = 10_000


class SparkUnavailableError(RuntimeError):
    """PySpark or Java is missing; the message says how to install them."""


def require_pyspark() -> None:
    """Raise :class:`SparkUnavailableError` unless PySpark 4 with pandas is importable."""
    try:
        import pandas  # noqa: F401  (PySpark's Arrow UDFs need it)
        import pyspark
    except ImportError as exc:
        raise SparkUnavailableError(
            f"the Spark engine needs PySpark 4 ({exc.name} is not installed): "
            "pip install 'distillguard[spark]'"
        ) from None
    if int(pyspark.__version__.split(".")[0]) < 4:
        raise SparkUnavailableError(
            f"the Spark engine needs PySpark 4 (found {pyspark.__version__}): "
            "pip install 'distillguard[spark]'"
        )


def java_available() -> bool:
    """Whether a Java runtime is on PATH or in JAVA_HOME (a local master needs Java 17+)."""
    import shutil

    home = os.environ.get("JAVA_HOME")
    return shutil.which("java") is not None or bool(
        home and os.path.exists(os.path.join(home, "bin", "java"))
    )


def local_cores(master: str) -> int:
    """Cores of a local master: ``local`` 1, ``local[4]`` 4, ``local[*]`` this machine's."""
    inner = master[len("local[") : -1] if master.startswith("local[") else "1"
    inner = inner.split(",")[0]
    return (os.cpu_count() or 1) if inner == "*" else max(1, int(inner))


def spark_session(master: str = DEFAULT_MASTER) -> SparkSession:
    """The session to run on (see the module docstring)."""
    require_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName("distillguard")
    if os.environ.get("SPARK_REMOTE"):
        return builder.getOrCreate()  # Spark Connect at $SPARK_REMOTE
    if os.environ.get("PYSPARK_GATEWAY_PORT"):
        return builder.getOrCreate()  # run by spark-submit: its --master and --conf apply
    if master.startswith("local") and not java_available():
        raise SparkUnavailableError(
            "the Spark engine on a local master needs Java 17 or newer (e.g. Debian's "
            "openjdk-17-jre-headless); none is on PATH or in JAVA_HOME"
        )
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # a few shuffle partitions per core: Spark's default of 200 means 200 Python tasks per
        # grouped stage, which on a small machine costs more than the work
        builder = builder.config("spark.sql.shuffle.partitions", str(2 * local_cores(master)))
    return (
        builder.master(master)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH_ROWS))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
