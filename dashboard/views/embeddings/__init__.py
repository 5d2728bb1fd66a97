"""Embeddings: a split in 2-D by the model's penultimate features. `page.py` is the script; the
other modules are its parts."""
