"""genvault's benchmark suite: ``python -m bench`` (``--smoke`` for the CI size).

Every benchmark runs all the things it compares in one run on one machine and
prints ratios, because absolute times on a shared 2-core box are noise. Figures
are printed, never asserted: targets are reported as met or not, and
``bench/README.md`` records the latest full run. See :mod:`bench.core` for the
shape of a benchmark.
"""
