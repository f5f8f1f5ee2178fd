"""`attnbench microbench`: attention kernels of every backend on the same inputs, checked against a
float32 reference, timed by CUDA-graph replay, and placed on the device's roofline.

base.py is the contract (shapes, inputs, Kernel); kernels/ holds one adapter per backend;
work.py counts FLOPs and bytes; run.py turns shapes x backends into records."""
