"""The Spark engine: THE pipeline (:mod:`detector.pipeline`) on Apache Spark, for logs that
outgrow one machine (``distillguard audit LOGS --engine spark``; ``pip install
'distillguard[spark]'``).

Nothing here re-states a feature, a score or a linkage rule: Spark moves the data and groups
it, and each group is handed to the same polars functions the local engine runs.

- :mod:`detector.spark.session`: the Spark session (``--spark-master``, ``SPARK_REMOTE`` or an
  active session);
- :mod:`detector.spark.frames`: the bridge between Spark's Arrow batches and polars frames;
- :mod:`detector.spark.read`: canonical events from Parquet, checked like the local reader;
- :mod:`detector.spark.engine`: fingerprints per partition, features / slices / evidence per
  group of accounts, the account table on the driver (:func:`detector.pipeline.score_table`),
  the audit's outputs (:func:`detector.audit.finish`);
- :mod:`detector.spark.linkage`: the inverted index and bounded candidate pairs as Spark
  joins and aggregations, pair evidence per bucket of pairs;
- :mod:`detector.spark.skew`: accounts too large for one group, split by time and merged.

PySpark is imported inside functions only, so that the rest of distillguard (and its doctests)
works without it.
"""
