"""User strings (names, sources, tags, captions, cells, cluster names, error messages that quote them) shown as
themselves: never as Markdown, HTML, a link, an image or an icon.

Streamlit renders Markdown in every text element and in most labels: a file named `![x](http://host/x.png)`
would make each viewer's browser fetch that image. `markdown(text)` is the Markdown source that Streamlit
renders as `text` and nothing else. It is a text transform with no Streamlit in it, so it is tested here and
holds for the command line's callers too.
"""

from __future__ import annotations

import re

# Invisible and zero-width, and no line break opportunity (unlike U+200B): the text reads exactly as before.
WORD_JOINER = "\u2060"

# CommonMark lets any ASCII punctuation character be backslash-escaped, and every Markdown construct (emphasis,
# links, images, code, raw HTML, entities, tables, lists, headings, math `$`, directives `:red[...]`) starts
# with one; escaped, each shows as the character itself.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# Escapes are resolved before Streamlit's frontend runs its transforms on the parsed text, which match the
# plain characters again: GFM's literal autolinks (`http://`, `www.` + domain, `name@domain`), shortcodes
# (`:smile:`, `:material_icon:`, `:streamlit:`) and arrows standing alone (`->`, `<-`, `<->`, `--`, `>=`, `<=`,
# `~=`). A word joiner breaks each at the one spot every match needs, and nowhere else, so that a name copied
# from a page mostly comes out whole (`photo 12:30.jpg`, `a-b.png`, `notes: draft` keep none):
_JOINS = re.compile(
    r"(?<=:)(?=//)"                            # `http:|//host`
    r"|(?<=www)(?=\.)"                         # `www|.host` (any case)
    r"|(?<=[-.\w+])(?=@[-\w])"                 # `name|@host`
    r"|(?<=:)(?=[\w+/-]+:)",                   # `:|smile:`, `:|material/icon:`
    re.IGNORECASE | re.ASCII,  # as the frontend's \w
)
_ARROWS = re.compile(r"(?:(?<=^[<>~-])|(?<=[\s\ufeff][<>~-]))(?=(?:->|[>=-])(?:[\s\ufeff]|$))")  # ` -|> `, ` <|-> `
_LINE_BREAK = re.compile(r"[ \t]*(?:\r\n|\r|\n)\s*")


def markdown(text: object) -> str:
    """`text` as Markdown source that Streamlit (1.67: st.markdown, st.caption, st.write, alerts, toasts, labels
    of widgets, buttons, popovers, expanders and tabs, radio and pills options) renders as that text.

    Line breaks stay line breaks (blank lines and indentation go: they would start a paragraph or a code
    block). The result is for running text: never put it inside backticks, a link or HTML.
    """
    text = _ARROWS.sub(WORD_JOINER, _JOINS.sub(WORD_JOINER, str(text).strip()))
    return _LINE_BREAK.sub("  \n", _PUNCTUATION.sub(r"\\\1", text))
