"""attnbench's own attention kernels and their vLLM integration (imports nothing heavy)."""
