"""Human-readable evaluation pages: ``report.html`` for one evaluation, ``compare.html`` for two.

Both are single self-contained files (inline CSS, JS and SVG; no CDN, no request) built from what
``intentkit evaluate`` writes: ``report.json``, ``predictions.parquet`` and the artifact's
``intentkit.json`` (plus the data folder's ``inspect.json`` when present). Entry points:
:func:`intentkit.evaluation.report.page.write_report` and
:func:`intentkit.evaluation.report.compare.write_compare`.
"""
