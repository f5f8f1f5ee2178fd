"""attnbench: which attention backend is fastest for my model and traffic, is it still correct,
and did this change regress it?"""

__version__ = "0.1.0"
