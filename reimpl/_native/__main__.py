"""``python -m reimpl._native``: builds the native boundary stamp ahead of time (setup.sh).

Exits 0 either way: without a compiler the recorder uses the Python hooks.
"""

from __future__ import annotations

import sys
import time

from reimpl import _native

if __name__ == "__main__":
    t0 = time.perf_counter()
    try:
        ext = _native._import(_native.build_dir()) or _native.build(verbose="-v" in sys.argv)
    except Exception as exc:
        print(f"setup: the native backward stamp did not build ({_native.reason(exc)}); "
              f"torchscope will be {_native.FALLBACK}", file=sys.stderr)  # fmt: skip
    else:
        print(
            f"setup: native backward stamp ready in {time.perf_counter() - t0:.0f} s "
            f"({_native.build_dir()})",
            file=sys.stderr,
        )
