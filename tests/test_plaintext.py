"""User strings put into Markdown (`mmcore.plaintext.markdown`, the pages' `ui.plain`) read as themselves.

Two parsers stand in for Streamlit's: markdown-it (CommonMark, with GFM tables and strikethrough) checks that
nothing but text comes out, and the regular expressions of the transforms Streamlit 1.67's frontend runs on
the parsed text (copied from its bundle, static/js/StreamlitMarkdown.*.js) check that none of them fires.
The browser test (test_browser_hostile.py) checks the real thing on every page.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from mmcore.plaintext import WORD_JOINER, markdown

HOSTILE = [
    "![x](http://evil.example/x.png)",
    "<img src=http://evil.example/a.png onerror=alert(1)>",
    "<script>alert(1)</script>",
    "[click](javascript:alert(1))",
    "<http://evil.example> <me@evil.example>",
    "www.evil.example and WWW.EVIL.EXAMPLE/path",
    "http://evil.example/x https://evil.example/y",
    "someone@evil.example",
    "<a href='http://evil.example/p'>p</a>",
    ":material/warning: :smile: :+1: :streamlit: :red[red] :blue-badge[b] :small[s]",
    "$x^2$ and $$y$$",
    "**bold** _it_ ~~gone~~ `code` ==mark==",
    "# heading",
    "1. list",
    "- item",
    "> quote",
    "| a | b |\n| - | - |\n| 1 | 2 |",
    "title\n===",
    "a -> b <- c <-> d -- e >= f <= g ~= h\u3000->\u00a0x",
    "&amp; &lt;b&gt; &#x3C;",
    "[^1] [ ] [x]",
    "line one\n\n    indented code\n\n\nlast\\",
    "trailing backslash \\",
    "photo 2024-01-01 12:30.jpg",
]

PUNCTUATION = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
# The frontend's transforms of text nodes, which run after escapes are resolved:
FRONTEND = [
    re.compile(r"(https?://|www(?=\.))([-.\w]+)([^ \t\r\n]*)", re.IGNORECASE | re.ASCII),  # GFM literal autolinks
    re.compile(r"([-.\w+]+)@([-\w]+(?:\.[-\w]+)+)", re.ASCII),  # GFM email autolinks (without their lookbehind)
    re.compile(r":material[_/](\w+):"),  # Material icons
    re.compile(r":streamlit:"),  # Streamlit's logo
    re.compile(r":[\w+-]+:"),  # emoji shortcodes (remark-emoji)
    re.compile(r"(^|[\s\ufeff])(<->|->|<-|--|>=|<=|~=)([\s\ufeff]|$)"),  # typographic arrows (JS's \s)
]


def text_node(source: str) -> str:
    """What the parser hands the frontend's transforms: the source with its escapes resolved."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", source.replace("  \n", "\n"))


def expected(text: str) -> str:
    """The text as shown (word joiners aside): as given, but with blank lines and indentation after a line
    break gone."""
    return re.sub(r"[ \t]*(?:\r\n|\r|\n)\s*", "\n", text.strip()).replace(WORD_JOINER, "")


def unescaped_punctuation(source: str) -> list[str]:
    found, i = [], 0
    while i < len(source):
        if source[i] == "\\" and i + 1 < len(source) and source[i + 1] in PUNCTUATION:
            i += 2
            continue
        if source[i] in PUNCTUATION:
            found.append(source[i])
        i += 1
    return found


PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def rendered(source: str) -> tuple[set[str], str]:
    """The kinds of tokens markdown-it makes of `source`, and the text it shows."""
    blocks = PARSER.parse(source)
    kinds = {t.type for t in blocks} | {c.type for t in blocks for c in t.children or []}
    text = "".join(c.content if c.type == "text" else "\n" for t in blocks for c in t.children or []
                   if c.type in ("text", "softbreak", "hardbreak"))
    return kinds, text


def check(text: str) -> None:
    source = markdown(text)
    assert unescaped_punctuation(source) == []
    node = text_node(source)
    assert node.replace(WORD_JOINER, "") == expected(text)
    for transform in FRONTEND:
        assert not transform.search(node), (transform.pattern, node)
    kinds, shown = rendered(source)
    if expected(text):
        assert kinds <= {"paragraph_open", "paragraph_close", "inline", "text", "softbreak", "hardbreak"}, kinds
        assert shown.replace(WORD_JOINER, "") == expected(text)


def test_hostile_strings_read_as_themselves():
    for text in HOSTILE:
        check(text)


def test_plain_names_keep_their_look():
    assert markdown("holiday photo 12.jpg") == "holiday photo 12\\.jpg"
    assert markdown("cluster 3 · harbour") == "cluster 3 · harbour"
    assert markdown(Exception("a.png: not a readable image")) == "a\\.png\\: not a readable image"
    for name in ("harbour.mp4 · 0:10–0:20", "photo 12:30 draft-2.jpg", "a->b --x"):  # nothing to break: no joiner
        assert WORD_JOINER not in markdown(name)


@settings(max_examples=400, deadline=None)
@given(st.text(st.sampled_from(sorted(PUNCTUATION) + list("wW htpsam1 \n\t\r\u00a0\u3000.:@é·\u2060")), max_size=60)
       | st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=60))  # stored names show control characters escaped
def test_any_text_reads_as_itself(text):
    check(text)
