"""Accuracy evals over OpenAI-compatible servers (GPQA, as OpenAI's gpt-oss evals run it); the
roles (sampler, eval, results) are in types.py."""
