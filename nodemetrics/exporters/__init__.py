"""
Exporters that ship a collector's numbers to monitoring systems.

Each lives in its own module and needs its own extra, so that the core never
imports them: :mod:`nodemetrics.exporters.prometheus`
(``nodemetrics[prometheus]``) and :mod:`nodemetrics.exporters.otel`
(``nodemetrics[otel]``).
"""
