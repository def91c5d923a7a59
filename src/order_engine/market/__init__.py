"""The simulated venues and chain ("devnet in a box").

The chain is a separate system: its state lives in the `chain` PostgreSQL schema, which
the engine's code reaches only through `SimulatedChain`, the way it would reach an RPC node.
"""
