"""Query parameters are untrusted: a page uses a value from the URL only when it is valid, and
says which parameter it ignored and what it expected, without repeating the value (a page would
otherwise show whatever text a link carries)."""

import streamlit as st


def ignored(*names: str, expected: str) -> None:
    """Warn that the link's `names` parameters were ignored, saying what was `expected`."""
    listed = " and ".join(f"`{name}`" for name in names)
    noun = "parameter was" if len(names) == 1 else "parameters were"
    st.warning(f"The link's {listed} {noun} ignored: expected {expected}.",
               icon=":material/link_off:")
