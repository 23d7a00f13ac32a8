from __future__ import annotations

import hashlib
import random
import string
import threading

import pytest

from mediaguard.signals.terms import TermList, TermMatcher, normalize, parse_terms

TERMS = """\
# sensitive terms, one per line
sex
anal
ass
cunt
nude beach
wet t-shirt   # hyphen: matched as "wet t shirt"
érotique
NAKED
"""


@pytest.fixture(scope="module")
def matcher() -> TermMatcher:
    return TermMatcher(parse_terms(TERMS))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Nude-Beach_Photo!! ", "nude beach photo"),
        ("Café", "cafe"),
        ("ÉROTIQUE", "erotique"),
        ("Straße", "strasse"),
        ("naïve  façade\tcoöperate\n", "naive facade cooperate"),
        ("don't", "don t"),
        ("ﬁne ℡ Ⅻ", "fine tel xii"),
        ("x\u0301y", "xy"),
        # full-width letters and an ideographic space
        ("\uff26\uff35\uff2c\uff2c\u3000\uff37\uff29\uff24\uff34\uff28", "full width"),
        ("...", ""),
        ("", ""),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_normalize_is_idempotent() -> None:
    samples = ["Ça VA?", "İstanbul", "Ǆungla", "ﬀ ﬃ", "नंगा की", "ǰ̌"]
    for text in samples:
        assert normalize(normalize(text)) == normalize(text)


@pytest.mark.parametrize(
    "text",
    [
        "Scunthorpe United",
        "Sunset over Essex",
        "Middlesex and Sussex",
        "a brass sextant",
        "Statistical analysis of canal traffic",
        "classic passage through the grass",
        "Penistone, Lightwater and Clitheroe",
        "sexy",  # no stemming: only the listed word itself
        "asses",
    ],
)
def test_substrings_of_longer_words_are_not_flagged(matcher: TermMatcher, text: str) -> None:
    assert matcher.match_text(text) == []
    assert matcher.match(text, text, [text, *text.split()]) == []


@pytest.mark.parametrize(
    ("title", "description", "expected"),
    [
        ("Nude Beach at dawn", None, ["nude beach"]),
        (None, "We walked to the nude beach, then home.", ["nude beach"]),
        ("Sex", "", ["sex"]),
        ("sex.", "(ass)", ["ass", "sex"]),
        ("A wet T-shirt contest", None, ["wet t shirt"]),
        ("Wet t shirt", None, ["wet t shirt"]),
        ("Naked", "naked NAKED nAkEd", ["naked"]),
    ],
)
def test_words_and_phrases_in_title_and_description(
    matcher: TermMatcher, title: str | None, description: str | None, expected: list[str]
) -> None:
    assert matcher.match(title, description, None) == expected


def test_accents_and_case_fold_both_ways() -> None:
    accented = TermMatcher(TermList.of(["érotique", "Café Noir"]))
    plain = TermMatcher(TermList.of(["EROTIQUE", "cafe noir"]))
    for text in ["érotique", "Erotique", "ÉROTIQUE", "e\u0301rotique", "erotique"]:
        assert accented.match_text(text) == ["erotique"]
        assert plain.match_text(text) == ["erotique"]
    for text in ["CAFÉ NOIR", "café-noir", "Cafe noir"]:
        assert accented.match_text(text) == ["cafe noir"]
        assert plain.match_text(text) == ["cafe noir"]
    assert accented.match_text("cafés noirs") == []


def test_punctuation_separates_words(matcher: TermMatcher) -> None:
    assert matcher.match_text("nude-beach") == ["nude beach"]
    assert matcher.match_text("nude_beach") == ["nude beach"]
    assert matcher.match_text("NUDE   beach!") == ["nude beach"]
    assert matcher.match_text("#sex") == ["sex"]
    assert matcher.match_text("sex's") == ["sex"]
    assert matcher.match_text("nudebeach") == []


def test_tags_are_matched_each_on_its_own(matcher: TermMatcher) -> None:
    assert matcher.match(None, None, ["landscape", "nude beach"]) == ["nude beach"]
    assert matcher.match(None, None, ["Nude-Beach"]) == ["nude beach"]
    assert matcher.match(None, None, ["sea", "sex"]) == ["sex"]
    assert matcher.match(None, None, ["nude", "beach"]) == []
    assert matcher.match(None, None, ["wet t", "shirt"]) == []
    assert matcher.match(None, None, ["essex", "sextant"]) == []


def test_phrases_do_not_span_fields(matcher: TermMatcher) -> None:
    assert matcher.match("Morning nude", "beach walk", ["nude"]) == []
    assert matcher.match("nude", None, ["beach"]) == []
    assert matcher.match(None, "a nude", ["beach"]) == []
    assert matcher.match("at the nude beach", "nude", ["beach"]) == ["nude beach"]


def test_none_and_empty_fields(matcher: TermMatcher) -> None:
    assert matcher.match(None, None, None) == []
    assert matcher.match("", "", []) == []
    assert matcher.match(None, None, ["", "sex", ""]) == ["sex"]
    assert matcher.match_text("") == []


def test_tags_must_not_be_one_string(matcher: TermMatcher) -> None:
    with pytest.raises(TypeError):
        matcher.match(None, None, "sex")


def test_results_are_sorted_and_distinct(matcher: TermMatcher) -> None:
    found = matcher.match(
        "sex ass SEX", "Nude beach, cunt, anal, sex", ["ass", "Ass", "érotique", "anal"]
    )
    assert found == ["anal", "ass", "cunt", "erotique", "nude beach", "sex"]


def test_overlapping_and_nested_terms() -> None:
    matcher = TermMatcher(TermList.of(["nude", "nude beach", "beach party", "party"]))
    assert matcher.match_text("nude beach party") == ["beach party", "nude", "nude beach", "party"]
    assert matcher.match_text("nude nude nude") == ["nude"]


def test_parse_terms_comments_blank_lines_and_bom() -> None:
    text = (
        "\ufeff# a comment on the first line\n"
        "\n"
        "   \n"
        "  sex  \n"
        "   # indented comment\n"
        "nude beach # trailing comment\n"
        "anal\t# tab before the comment\n"
        "c#\n"
        "#hashtag-like comment\n"
        "Nude   Beach\r\n"
        "---\n"
        "last line without newline"
    )
    terms = parse_terms(text)
    assert terms.terms == ("anal", "c", "last line without newline", "nude beach", "sex")
    assert len(terms) == 5


def test_bom_before_a_comment_is_ignored() -> None:
    assert parse_terms("\ufeff# only a comment\n").terms == ()
    assert parse_terms("\ufeffsex\n").terms == ("sex",)


def test_version_names_the_normalised_set() -> None:
    base = parse_terms("sex\nnude beach\nérotique\n")
    same = [
        parse_terms("érotique\nsex\nnude beach\n"),
        parse_terms("SEX\nNude-Beach\nsex\n\n# comment\nEROTIQUE\nnude  beach\n"),
        TermList.of(["nude beach", "erotique", "sex", "Sex"]),
    ]
    for other in same:
        assert other == base
        assert other.version == base.version
    assert base.version == hashlib.sha256(b"erotique\nnude beach\nsex").hexdigest()
    for changed in ["sex\nnude beach\n", "sex\nnude beach\nerotic\n", "sex\nnude\nerotique\n"]:
        assert parse_terms(changed).version != base.version
    assert TermMatcher(base).version == base.version


def test_empty_list() -> None:
    for empty in [parse_terms(""), parse_terms("# nothing\n\n"), TermList.of(["!!", " "])]:
        assert empty.terms == ()
        assert len(empty) == 0
        assert empty.version == hashlib.sha256(b"").hexdigest()
        matcher = TermMatcher(empty)
        assert matcher.match("sex", "nude beach", ["anal"]) == []
        assert matcher.match_text("anything") == []


def test_terms_built_by_hand_are_normalised_for_matching() -> None:
    matcher = TermMatcher(TermList(("Nude-Beach", "!!"), "by-hand"))
    assert matcher.match_text("nude beach") == ["nude beach"]
    assert matcher.version == "by-hand"


def _pseudo_words(count: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 9))))
    return sorted(words)


def test_many_terms() -> None:
    rng = random.Random(7)
    words = _pseudo_words(7_000, rng)
    single, pool = words[:4_000], words[4_000:]
    phrases = [f"{a} {b}" for a, b in zip(pool[:1_000], pool[1_000:2_000], strict=True)]
    matcher = TermMatcher(TermList.of(single + phrases))
    assert len(TermList.of(single + phrases)) == 5_000
    unlisted = pool[2_000:]
    for _ in range(300):
        chosen = sorted(set(rng.sample(single, 3) + rng.sample(phrases, 2)))
        filler = rng.sample(unlisted, 10)
        text = " ".join(filler[:5] + [w.upper() for w in chosen] + filler[5:])
        assert matcher.match_text(text) == chosen
        # The same words, each glued to a letter or split over two tags, are not found.
        glued = ["x" + w.replace(" ", " x") for w in chosen]
        assert matcher.match_text(" ".join(glued)) == []
        split_phrases = [part for p in chosen if " " in p for part in p.split()]
        assert matcher.match(None, None, split_phrases) == []


def test_concurrent_matching() -> None:
    matcher = TermMatcher(parse_terms(TERMS))
    cases = [
        (("Nude Beach", "Essex", ["sex"]), ["nude beach", "sex"]),
        (("Scunthorpe", "analysis", ["classic"]), []),
        ((None, "ÉROTIQUE wet t-shirt", None), ["erotique", "wet t shirt"]),
    ]
    failures: list[object] = []

    def work() -> None:
        for _ in range(2_000):
            for args, expected in cases:
                found = matcher.match(*args)
                if found != expected:
                    failures.append((args, found))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
