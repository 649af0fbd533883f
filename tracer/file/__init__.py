"""The trace file: its format (store), loading and validating it (trace), its errors."""
