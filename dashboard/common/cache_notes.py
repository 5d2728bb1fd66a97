"""Notes about damaged cache files (`fer_core.cache.DamagedEntry`): each tab is told, once, of
the files found damaged and computed again since it opened, whichever tab's work found them."""

import streamlit as st

from fer_core import cache

SEEN = "cache_notes_seen"


def show_new() -> None:
    """A toast for each note this session has not been shown yet."""
    notes = cache.damage_notes(st.session_state.get(SEEN, 0))
    if SEEN not in st.session_state:  # a new tab: only what is found from now on
        st.session_state[SEEN] = notes[-1][0] if notes else 0
        return
    for serial, note in notes:
        st.toast(note[0].upper() + note[1:] + ".", icon=":material/build:")
        st.session_state[SEEN] = serial
