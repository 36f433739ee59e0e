"""optialloc: one constraint-optimization dispatcher for a whole teuthology lab."""

__version__ = "0.1.0"
