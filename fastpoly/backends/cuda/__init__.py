"""The ``"cupy"`` backend: CUDA kernels from the top-level ``kernels/`` folder, loaded through CuPy.

:mod:`.source` finds and digests the kernel sources (no CuPy needed); :mod:`.backend` compiles them
lazily (memoised) and drives launches.  Nothing here imports CuPy at import time.
"""
