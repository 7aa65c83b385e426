"""The benchmark: this library against the usual alternatives, measured side by side.

    python -m benchmarks [--short] [--baseline REF_OR_SRC] [--markdown docs/benchmarks.md]

`_base` holds what every scenario shares (interleaved timing, medians, the report and its
table); `_contenders` the auths being compared; one module per scenario; `_charts` the SVG
writer; `_baseline` a second copy of the library from another checkout. `__main__` lists the
scenarios in the order they run (docs/benchmarks.md explains each row).
"""
