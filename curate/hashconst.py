"""The hashing constants the compiled kernels share, defined once.

Plain module-level integers: numba freezes globals into a kernel when it compiles it, so
``np.uint64(FNV_OFFSET)`` costs nothing at run time. Changing any of them changes every
MinHash signature and repetition hash, and with them the committed locks.
"""
from __future__ import annotations

FNV_OFFSET = 0xCBF29CE484222325  # FNV-1a 64-bit offset basis
FNV_PRIME = 0x100000001B3  # FNV-1a 64-bit prime
GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment (2^64 / golden ratio), also an n-gram's seed
MIX1 = 0xBF58476D1CE4E5B9  # splitmix64 finaliser multipliers
MIX2 = 0x94D049BB133111EB
