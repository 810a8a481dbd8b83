"""mmscope: explore a pile of images, text, documents, video and audio in shared embedding spaces. Run with `streamlit run app.py`."""

import streamlit as st

import ui

ui.init_state()
st.set_page_config(page_icon=ui.FAVICON)  # before st.navigation, or the browser fetches its page's icon as favicon
PAGES = [
    st.Page("pages/upload.py", title="Upload", icon=":material/upload:", url_path="upload"),
    st.Page("pages/search.py", title="Search", icon=":material/search:", url_path="search"),
    st.Page("pages/map.py", title="Map", icon=":material/scatter_plot:", url_path="map"),
    st.Page("pages/gallery.py", title="Gallery", icon=":material/photo_library:", url_path="gallery"),
    st.Page("pages/clusters.py", title="Clusters", icon=":material/category:", url_path="clusters"),
    st.Page("pages/outliers.py", title="Outliers", icon=":material/crisis_alert:", url_path="outliers"),
    st.Page("pages/duplicates.py", title="Duplicates", icon=":material/content_copy:", url_path="duplicates"),
    st.Page("pages/collections.py", title="Collections", icon=":material/folder_open:", url_path="collections"),
    st.Page("pages/item.py", title="Item", icon=":material/image:", url_path="item", visibility="hidden"),
]


def home() -> None:
    """The root URL: returning users land on Search, new ones on Upload. The default page is served at "/" only,
    so a page of its own keeps /upload and /search working whatever the collection holds."""
    has_items = ui.collection_sizes().get(ui.collection(), 0) > 0
    st.switch_page(PAGES[1] if has_items else PAGES[0])


st.navigation([st.Page(home, title="mmscope", url_path="home", default=True, visibility="hidden"), *PAGES]).run()
