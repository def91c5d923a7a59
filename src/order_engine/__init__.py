"""Order execution engine for Solana swaps."""

__version__ = "0.1.0"
