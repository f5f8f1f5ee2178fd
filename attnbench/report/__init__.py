"""`attnbench report`: one self-contained static HTML dashboard over result records."""
