"""The ``"numba"`` backend: fused, multi-threaded CPU kernels under one jit policy (:mod:`.jit`).

Importing a module of this package imports Numba; kernels compile on first use (cached on disk).
"""
