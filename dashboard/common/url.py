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


def write(wanted: dict[str, str | None]) -> None:
    """Bring the URL's parameters to `wanted`: None removes one. Unchanged values are not
    written again (each write is a message to the browser)."""
    for key, value in wanted.items():
        if value is None:
            st.query_params.pop(key, None)
        elif st.query_params.get(key) != value:
            st.query_params[key] = value


def drop(keys: list[str]) -> None:
    """Remove `keys` from the URL, telling the browser even when this run's copy of the URL
    lacks them: a URL an earlier, overtaken run wrote may still be on its way to the browser,
    and the next rerun would bring its parameters back."""
    st.query_params.from_dict({k: v for k, v in st.query_params.to_dict().items()
                               if k not in keys})
