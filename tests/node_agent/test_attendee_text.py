"""What a reason may quote of attendee text: short, and nothing that a terminal would act on."""

from __future__ import annotations

from node_agent.labs.attendee_files import EXCERPT_CHARS, excerpt


def test_short_printable_text_is_quoted_as_it_is():
    assert excerpt("frobnicate, écrire") == "frobnicate, écrire"


def test_control_characters_and_backslashes_are_escaped_as_repr_does():
    assert excerpt("a\x1b]0;owned\x07\nb\\c\u200b") == "a\\x1b]0;owned\\x07\\nb\\\\c\\u200b"


def test_long_text_is_cut_to_the_limit_and_says_so():
    head = excerpt("root:" + "x" * 500)
    assert len(head) == EXCERPT_CHARS and head.startswith("root:") and head.endswith("…")
    tail = excerpt("y" * 500 + "the end", tail=True)
    assert len(tail) == EXCERPT_CHARS and tail.startswith("…") and tail.endswith("the end")


def test_escapes_count_towards_the_limit():
    assert len(excerpt("\x00" * 100)) == EXCERPT_CHARS
