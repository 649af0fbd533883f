"""Recording: the recorder (the sink reimpl emits into), following forked and spawned
processes, running a program under it, imports, numba compilations and --deep calls."""
