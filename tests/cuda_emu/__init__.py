"""CPU emulation of the CUDA execution model for fastpoly's kernels (test helper, not part of the package).

* ``cuda_emu.h`` / ``emu_runtime.cpp`` / ``emu_registry.h``: the C++ shim and fiber scheduler that let
  the real ``kernels/*.cu`` compile with g++ and run block by block;
* :mod:`.build`: compiles them (once per source version, cached) into a shared library;
* :mod:`.device`: ``EmuDevice``, the emulator implementation of the cupy backend's device interface.
"""
