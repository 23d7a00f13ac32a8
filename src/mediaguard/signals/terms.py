"""Sensitive terms in an item's title, description and tags.

A term list holds one term or phrase per line. Terms and text are normalised the same way:
case-folded, accents removed (NFKD, then the non-spacing marks dropped) and cut into word tokens
joined by single spaces, so "Nude-Beach" and "nude beach" are the same text. One Aho-Corasick
automaton holds " term " for every term, and a single pass over
" title \\n description \\n tag \\n tag " finds them all: the spaces around each key make every
match whole words (" sex " does not occur in " essex "), and since normalised text never holds
"\\n", a phrase cannot run from one field or tag into the next.

There is no stemming (it matched innocent words): "nudes" needs its own line. Scripts written
without spaces (Chinese, Japanese, Thai) make one token per run of text, so a term inside such a
run is not found.
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import ahocorasick

# Normalised text never holds "\n", so no key can match across it.
_BETWEEN_FIELDS = " \n "
_TRAILING_COMMENT = re.compile(r"\s#")
_ASCII_WORD = string.ascii_letters + string.digits
_ASCII_FOLD = str.maketrans(
    {chr(c): (chr(c).lower() if chr(c) in _ASCII_WORD else " ") for c in range(128)}
)
# Distinct characters remembered by _FoldTable; past it, new ones are classified on every use
# (text with every code point in it must not grow the table without bound).
_FOLD_CACHE_LIMIT = 65_536


class _FoldTable(dict[int, str]):
    """A str.translate() table for decomposed, case-folded text, filled on first sight of each
    character: non-spacing marks vanish, word characters stay, anything else becomes a space."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        category = unicodedata.category(char)
        if category in ("Mn", "Me"):
            folded = ""
        # Spacing marks (Mc) are vowel signs in Indic scripts: part of the word around them.
        elif char.isalnum() or category == "Mc":
            folded = char
        else:
            folded = " "
        if len(self) < _FOLD_CACHE_LIMIT:
            self[code] = folded
        return folded


_FOLD = _FoldTable()


def normalize(text: str) -> str:
    """Case-folded, accent-free word tokens of `text`, joined by single spaces.

    Anything but a letter, digit or spacing mark separates words, punctuation, apostrophes,
    hyphens and underscores included: `normalize("  Nude-Beach_Photo!! ")` is
    `"nude beach photo"`, `normalize("ÉROTIQUE")` is `"erotique"`.
    """
    if text.isascii():
        return " ".join(text.translate(_ASCII_FOLD).split())
    # NFKD before case folding too: compatibility characters can decompose to capitals ("℡").
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return " ".join(folded.translate(_FOLD).split())


@dataclass(frozen=True)
class TermList:
    """Normalised, distinct terms in sorted order, and a version that names exactly that set."""

    terms: tuple[str, ...]
    version: str

    @classmethod
    def of(cls, terms: Iterable[str]) -> TermList:
        """The list of `terms` normalised; duplicates and terms with no word in them dropped."""
        normalised = sorted({term for term in map(normalize, terms) if term})
        version = hashlib.sha256("\n".join(normalised).encode()).hexdigest()
        return cls(tuple(normalised), version)

    def __len__(self) -> int:
        return len(self.terms)


def parse_terms(text: str) -> TermList:
    """A term list from text with one term or phrase per line.

    Blank lines and lines starting with "#" are skipped, a "#" after whitespace starts a comment
    to the end of the line, and a leading byte order mark is ignored.
    """
    terms = []
    for line in text.removeprefix("\ufeff").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            terms.append(_TRAILING_COMMENT.split(stripped, maxsplit=1)[0])
    return TermList.of(terms)


class TermMatcher:
    """Finds the terms of a TermList in an item's fields, as whole words and whole phrases.

    Built once; `match` and `match_text` may then be called from any number of threads.
    """

    def __init__(self, terms: TermList) -> None:
        self._terms = terms
        self._automaton: ahocorasick.Automaton | None = None
        keys = {normalize(term) for term in terms.terms} - {""}
        if keys:
            automaton = ahocorasick.Automaton()
            for key in keys:
                automaton.add_word(f" {key} ", key)
            automaton.make_automaton()
            self._automaton = automaton

    @property
    def version(self) -> str:
        return self._terms.version

    def match(
        self, title: str | None, description: str | None, tags: Sequence[str] | None
    ) -> list[str]:
        """The distinct terms found in the title, the description or any one tag, sorted."""
        if isinstance(tags, str):
            raise TypeError("tags must be a sequence of strings, not one string")
        fields = [field for field in (title, description, *(tags or ())) if field]
        return self._search(fields)

    def match_text(self, text: str) -> list[str]:
        """The distinct terms found in `text`, sorted."""
        return self._search([text])

    def _search(self, fields: list[str]) -> list[str]:
        if self._automaton is None or not fields:
            return []
        haystack = " " + _BETWEEN_FIELDS.join(map(normalize, fields)) + " "
        return sorted({term for _, term in self._automaton.iter(haystack)})
