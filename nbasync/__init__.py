"""nbasync: the asynchronous methods of Mnih et al. (2016) with hand-written numba networks.

Layers, imported one way: ``nn`` <- ``optim`` <- ``shared`` <- ``algos`` <- ``runner`` <-
``train`` <- ``cli``; ``envs``, ``runfile`` and ``config`` are leaves. See
docs/architecture.md.
"""

__version__ = "0.1.0"
