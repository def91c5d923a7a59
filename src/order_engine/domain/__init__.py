"""Pure domain code: no I/O, no clocks, no randomness of its own."""
