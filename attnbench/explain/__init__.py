"""`attnbench explain`: how much of a serving TPOT gap between backends the attention kernels account for."""
