"""`python -m fer_core` (or `fer`): one module per command; `main` parses and dispatches."""
