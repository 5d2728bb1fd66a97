"""The pages, one module or folder each; a page imports `dashboard.sidebar`, `dashboard.common`,
its own folder and `fer_core`, never another page. Each `page.py` defines `page()` and calls it
last. (Not `pages/`: that name switches Streamlit to its older multi-page mode.)"""
