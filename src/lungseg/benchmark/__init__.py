"""``lungseg benchmark``: Dice and latency of every format, backend and device, and of the peers.

Modules: :mod:`.machine` (what the machine is, its peak FLOP/s), :mod:`.timing` (latency
and throughput measurement), :mod:`.targets` (one runnable row per format x device),
:mod:`.peers` (architecture replicas of other lung models, for speed only),
:mod:`.cabi` (the C++ runtime's C ABI through ctypes), :mod:`.synthetic` (chest-like test
images), :mod:`.worker` (runs one row in its own process), :mod:`.suite` (plans and runs
the rows) and :mod:`.report` (results.csv, results.md, plots).
"""
