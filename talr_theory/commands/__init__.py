"""CLI subcommands: each module has ``register(subparsers)``; see ``talr_theory.cli``."""
