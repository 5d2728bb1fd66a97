"""The Streamlit dashboard over fer_core: `streamlit run dashboard/app.py`."""
