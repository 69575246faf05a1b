"""The self-contained HTML audit report (:mod:`detector.report.html`) and its plots
(:mod:`detector.report.plots`)."""
