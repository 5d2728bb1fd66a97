"""Confusions: the clickable matrix, a cell's faces and mean saliency, metrics. `page.py` is the
script; the other modules are its parts."""
