"""Follow-up banks: the hash follows the order values are stored in, and bad bank files are named."""
import pytest

from flrlib.files import BadFile
from flrlib.followups import load_bank, make_bank
from flrlib.scoring import ScoreConfig, Scorer

RELEVANCE = {"positive": ["That answers my question perfectly.", "Thanks, that helps!", "Great, exactly that."],
             "negative": ["Huh?"]}
CORRECTNESS = {"positive": ["That is correct."],
               "negative": ["That's wrong.", "I think you made a mistake there.", "No."]}


def test_reordered_banks_do_not_share_cached_values(tiny, convs, tmp_path):
    """Same categories in another order: per-follow-up values are stored in bank order, so the cache must not
    hand one bank's values to the other."""
    a = make_bank({"relevance": RELEVANCE, "correctness": CORRECTNESS}, name="b")
    b = make_bank({"correctness": CORRECTNESS, "relevance": RELEVANCE}, name="b")
    cache = tmp_path / "scores.jsonl"
    Scorer(tiny, a, ScoreConfig(), cache=cache).score(convs, progress=False)
    from_cache = Scorer(tiny, b, ScoreConfig(), cache=cache).score(convs, progress=False)
    fresh = Scorer(tiny, b, ScoreConfig(), cache=None).score(convs, progress=False)
    for got, want in zip(from_cache, fresh):
        assert got["reward"] == pytest.approx(want["reward"], abs=1e-5)
        assert got["categories"] == pytest.approx(want["categories"], abs=1e-5)
    assert a.hash != b.hash


def test_hash_ignores_the_name_but_not_the_text_order():
    base = make_bank({"relevance": RELEVANCE}, name="x")
    assert make_bank({"relevance": RELEVANCE}, name="y").hash == base.hash
    swapped = {"positive": RELEVANCE["positive"][::-1], "negative": RELEVANCE["negative"]}
    assert make_bank({"relevance": swapped}).hash != base.hash


@pytest.mark.parametrize("name, text, msg", [
    ("bank.yaml", "relevance:\n  positive: [a, b\n  negative: [c]\n", r"bank.yaml:3: not valid YAML"),
    ("bank.json", '{"relevance": {"positive": ["a"],\n "negative": ["b"],}}', r"bank.json:2: not valid JSON"),
    ("bank.json", b'{"relevance": {"positive": ["\xff"], "negative": ["b"]}}', r"bank.json:1: not valid UTF-8"),
    ("bank.yml", b"relevance:\n  positive: [a]\n  negative: [\xe9]\n", r"bank.yml:3: not valid UTF-8"),
])
def test_bad_bank_files_name_the_file_and_line(tmp_path, name, text, msg):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(BadFile, match=msg):
        load_bank(path)


def test_unknown_categories_are_a_value_error_naming_them(small_bank):
    with pytest.raises(ValueError, match=r"no categories \['nonsense'\]; it has \['relevance', 'correctness'\]"):
        small_bank.select(["relevance", "nonsense"])
    with pytest.raises(KeyError):  # still a KeyError for callers that caught that
        small_bank.select(["nonsense"])
