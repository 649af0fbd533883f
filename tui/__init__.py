"""torchscope's terminal UI: explore a trace file (``torchscope view FILE``).

Reads traces through ``tracer``; ``tracer`` never imports this package.
"""
