"""mmscope's engine: read media, embed it in one model space, store it in Chroma, search and explore it."""

__version__ = "0.1.0"
