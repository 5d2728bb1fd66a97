"""Training: start, follow, stop and resume runs, and compare them. `page.py` is the script; the
other modules are its parts."""
