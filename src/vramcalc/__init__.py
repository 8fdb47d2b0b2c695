"""vramcalc: size GPU memory for self-hosted LLM inference."""

__version__ = "0.1.0"
