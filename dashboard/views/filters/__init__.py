"""Filters: activation maximization and the real faces each filter prefers. `page.py` is the
script; the other modules are its parts."""
