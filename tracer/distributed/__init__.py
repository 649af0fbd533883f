"""Distributed runs: ranks' identity and clocks, and merging hosts' parts into one trace.

``rank.py`` (what a rank records when its process group starts), ``clock.py``
(its clock against rank 0's), ``parts.py`` (reading the part files),
``matching.py`` (collectives matched across ranks), ``merge.py`` (writing
the merged trace), ``launch.py`` (the torchrun front). See docs/distributed.md.
"""
