"""A process's own peak memory, for the benchmarks that report one."""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """This process's own peak RSS.

    VmHWM, not ru_maxrss: Linux carries a parent's peak into ru_maxrss across
    fork + exec, so a step measured in a child of a big benchmark runner would
    report the runner's peak.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
