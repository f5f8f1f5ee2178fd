"""`attnbench-fa4`: split-KV paged decode attention in CuTe DSL, FA4-style, for SM90.

planner.py chooses splits and the workspace; reference.py is the same algorithm in plain torch
(the oracle); kernel.py, combine.py and launcher.py are the GPU side. Importing this package
imports nothing heavy; the CuTe DSL modules load only when the launcher is imported.
"""
