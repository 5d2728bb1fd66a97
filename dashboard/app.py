"""Entry script: `streamlit run dashboard/app.py [-- --data PATH]`.

It draws the shared sidebar on every run (so the choice survives page changes), then runs the
page chosen in the navigation, and notes any damaged cache file that was computed again. The
page scripts live in views/, not pages/: a pages/ folder next to the entry script switches
Streamlit to its older multi-page mode on a deep link such as /training, bypassing
st.navigation and this script.
"""

import sys
from pathlib import Path

# Started as a script, so the folder holding `dashboard` and `fer_core` must be made
# importable; the script reruns on every interaction, hence the check.
CODE_ROOT = str(Path(__file__).resolve().parent.parent)
if CODE_ROOT not in sys.path:
    sys.path.insert(0, CODE_ROOT)

import streamlit as st

from dashboard import sidebar
from dashboard.common import cache_notes

st.set_page_config(page_title="FER explainability", page_icon=":material/mood:", layout="wide")

PAGES = [
    st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("views/model.py", title="Model", icon=":material/account_tree:", url_path="model"),
    st.Page("views/training/page.py", title="Training", icon=":material/monitoring:",
            url_path="training"),
    st.Page("views/confusions/page.py", title="Confusions", icon=":material/grid_on:",
            url_path="confusions"),
    st.Page("views/saliency/page.py", title="Saliency", icon=":material/visibility:",
            url_path="saliency"),
    st.Page("views/filters/page.py", title="Filters", icon=":material/filter_center_focus:",
            url_path="filters"),
    st.Page("views/embeddings/page.py", title="Embeddings", icon=":material/scatter_plot:",
            url_path="embeddings"),
]

page = st.navigation(PAGES)
cache_notes.show_new()  # damage found by a run this session stopped early, or by another tab
sidebar.render()
page.run()
cache_notes.show_new()
