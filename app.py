"""mmscope: explore a pile of images and text in one embedding space. Run with `streamlit run app.py`."""

import streamlit as st

page = st.navigation(
    [
        st.Page("pages/upload.py", title="Upload", icon=":material/upload:", url_path="upload"),
        st.Page("pages/search.py", title="Search", icon=":material/search:", url_path="search"),
    ]
)
page.run()
