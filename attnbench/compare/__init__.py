"""`attnbench compare`: baseline vs current records, judged by threshold and noise."""
