"""The random stream: Philox4x32-10 keyed by (seed, sample index), and the exact float32 operations.

* :mod:`~fastpoly.stream.rng` -- the Philox block function and the stream layout (words, normals, uniforms);
* :mod:`~fastpoly.stream.fmath` -- the FMA rule (exact float32 fused multiply-add in NumPy) and the
  project's own log and sin/cos polynomials, so every backend draws bit-identical normals.
"""
