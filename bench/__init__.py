"""genrec-bench: a benchmarking and ablation harness for generative recommendation."""

__version__ = "0.1.0"
