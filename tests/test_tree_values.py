from hypothesis import given
from hypothesis import strategies as st

from loomwork.tree import Token, join_tokens, split_tokens, tokens_text

token_lists = st.lists(
    st.builds(Token, text=st.text(min_size=1, max_size=5), logprob=st.floats(-20, 0), id=st.integers(0, 100)),
    min_size=1, max_size=12,
)


@given(token_lists, st.data())
def test_split_then_join_restores_tokens(tokens, data):
    text = tokens_text(tokens)
    offset = data.draw(st.integers(0, len(text)))
    head, tail = split_tokens(tokens, offset)
    assert tokens_text(head) == text[:offset]
    assert tokens_text(tail) == text[offset:]
    assert join_tokens(head, tail) == tuple(tokens)


def test_straddling_token_is_cut_and_marked():
    toks = (Token("ab", -1.0), Token("cde", -2.0))
    head, tail = split_tokens(toks, 3)
    assert head == (Token("ab", -1.0), Token("c", -2.0))
    assert tail == (Token("de", -2.0, cont=True),)
    assert Token.from_json(tail[0].to_json()) == tail[0]


def test_short_titles():
    from loomwork.tree import TITLE_CHARS, short_title

    assert short_title("The old lighthouse keeper climbed the stairs and") == \
        "The old lighthouse keeper climbed the stairs and"
    assert short_title("# Chapter 1\n\nIt was a dark and stormy night") == "Chapter 1"
    assert short_title("- item one\n- item two") == "item one"
    assert short_title("It was a dark and stormy night. The rain fell in torrents, except at occasional "
                       "intervals.") == "It was a dark and stormy night."
    long = short_title("word " * 40)
    assert len(long) <= TITLE_CHARS and long.endswith("word…")  # cut between words
    assert short_title("x" * 100) == "x" * (TITLE_CHARS - 1) + "…"
    assert short_title(" \n\t ") == ""


def test_short_titles_are_plain_text():
    from loomwork.tree import short_title

    assert short_title("## **Bold** heading with [a link](http://x.y) and `code`") == "Bold heading with a link and code"
    assert short_title("#### Deep heading ####") == "Deep heading"
    assert short_title("#hashtag is not a heading") == "#hashtag is not a heading"
    assert short_title("```python\nprint(1)\n```") == "print(1)"
    assert short_title("---\ntitle: x\n---\nBody text") == "Body text"
    assert short_title("snake_case_name and 2 * 3") == "snake_case_name and 2 * 3"
