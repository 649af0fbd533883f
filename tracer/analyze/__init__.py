"""Analyses of a loaded trace: numba aggregation kernels and the summary."""
