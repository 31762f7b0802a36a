"""The data step: copies from a mirror, skips what is present, says clearly what is missing offline."""
import json

import pytest

from flrlib.data import fetch
from flrlib.data.fetch import DataMissing, _elo_from_readme, _followups_from_utils, sources
from flrlib.followups import load_bank


def test_copy_from_mirror_then_skip(tmp_path, data_ready):
    report = fetch(dest=tmp_path / "d", mirror=data_ready, online=False, only=["paper/"], verbose=False)
    assert report["copied"] == 2 and report["missing"] == []
    assert (tmp_path / "d/paper/followups.json").read_bytes() == (data_ready / "paper/followups.json").read_bytes()
    again = fetch(dest=tmp_path / "d", mirror=data_ready, online=False, only=["paper/"], verbose=False)
    assert again["copied"] == 0 and again["present"] == 2


def test_offline_without_mirror_names_what_is_missing(tmp_path):
    with pytest.raises(DataMissing, match=r"missing \(HH-RLHF\).*FLR_DATA_MIRROR"):
        fetch(dest=tmp_path / "d", mirror=tmp_path / "nomirror", online=False, only=["hh-rlhf/"], verbose=False)
    assert not list((tmp_path / "d").rglob("*.part*"))


def test_every_source_is_pinned():
    for s in sources():
        assert s.url.startswith("https://raw.githubusercontent.com/"), s
    assert len({s.path for s in sources()}) == len(sources())


def test_paper_bank_is_byte_exact_with_duplicates(paper_bank):
    assert list(paper_bank.categories) == ["understanding", "relevance", "correctness", "engagingness",
                                           "informativeness", "following"]
    assert all(len(d["positive"]) == 10 and len(d["negative"]) == 10 for d in paper_bank.categories.values())
    texts = paper_bank.texts()
    assert len(texts) == 120 and len(texts) - len(set(texts)) >= 3  # in-list duplicates kept
    assert "You’re very clear and easy to understand." in texts  # curly apostrophe kept
    dedup = paper_bank.deduplicated()
    assert len(dedup.texts()) < 120 and dedup.hash != paper_bank.hash


def test_online_parsers_on_handmade_files():
    utils = "\n".join(f"{c}_pos = ['good {c}']\n{c}_neg = ['bad {c}']" for c in
                      ["understanding", "relevance", "correctness", "engagingness", "informativeness", "following"])
    bank = _followups_from_utils("import os\n" + utils + "\nx = os.path\n")
    assert bank["categories"]["relevance"] == {"positive": ["good relevance"], "negative": ["bad relevance"]}
    readme = "\n".join(f"| model-{i} | {1100 + i} |" for i in range(12))
    assert _elo_from_readme("# ELO\n" + readme)["elo"]["model-3"] == 1103.0


def test_bank_files_and_errors(tmp_path, data_ready):
    p = tmp_path / "b.yaml"
    p.write_text("categories:\n  c:\n    positive: [good]\n    negative: [bad]\n")
    assert load_bank(p).texts() == ["good", "bad"]
    p.write_text(json.dumps({"c": {"positive": [], "negative": ["no"]}}))
    p2 = p.with_suffix(".json")
    p.rename(p2)
    with pytest.raises(ValueError, match=r"b.json: category 'c' field 'positive'"):
        load_bank(p2)
    with pytest.raises(KeyError, match="no categories"):
        load_bank("paper", categories=["nope"])
