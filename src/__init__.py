"""leadscore: a reproducible, leak-free B2B lead propensity pipeline."""

import os as _os

# OpenMP threads (LightGBM's) spin-wait for work by default. On a shared or busy machine the spinning
# threads compete with the ones doing work: measured on 2 busy cores, a 2-thread fit ran about 10x slower
# per round than with passive waiting (benchmarks/train_threads_bench.py). OpenMP reads this once, when
# the runtime loads, so it is set here, before any leadscore module imports LightGBM. An explicit
# setting in the environment wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
