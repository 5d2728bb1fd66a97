"""Saliency: one face's maps by every method, and which methods to trust. `page.py` is the script;
the other modules are its parts."""
