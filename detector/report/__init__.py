"""The self-contained HTML audit report: :mod:`detector.report.html` renders it from
``report.html.j2``, :mod:`detector.report.rows` builds its lists, :mod:`detector.report.plots`
and :mod:`detector.report.network` draw its figures, :mod:`detector.report.fmt` formats values."""
