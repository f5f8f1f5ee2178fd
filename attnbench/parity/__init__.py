"""`attnbench parity`: does backend X compute the same model as backend Y? Answered from
teacher-forced prompt logprobs and greedy continuations (collect), compared position by position
(metrics) against a reference backend and, where the model allows, an fp32 transformers run
(reference), with pass/fail thresholds (thresholds)."""
