"""The data step: copies from a mirror, skips what is present, says clearly what is missing offline."""
import json
from pathlib import Path

import pytest

from flrlib.data import fetch
from flrlib.data.fetch import DataMissing, Source, _download, _elo_from_readme, _followups_from_utils, sources
from flrlib.followups import load_bank
from flrlib.paths import mirror_dir


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
    utils = "\n".join(f"{c}_pos = texts = ['good {c}']\n{c}_neg = ['bad {c}']" for c in
                      ["understanding", "relevance", "correctness", "engagingness", "informativeness", "following"])
    bank = _followups_from_utils("import os\n" + utils + "\nx = os.path\n")
    assert bank["categories"]["relevance"] == {"positive": ["good relevance"], "negative": ["bad relevance"]}
    readme = "\n".join(f"    'model-{i}': {990 + i}.0," for i in range(12))
    elo = _elo_from_readme("# ELO\n`lmsys_elo = {\n" + readme + "\n}`\nmore text {x}\n")["elo"]
    assert elo["model-3"] == 993.0 and list(elo)[0] == "model-0" and len(elo) == 12
    with pytest.raises(DataMissing, match="lmsys_elo"):
        _elo_from_readme("| model | 1234 |\n")
    with pytest.raises(DataMissing, match="'understanding_neg'"):
        _followups_from_utils("understanding_pos = ['a']\n")


UPSTREAM = Path(__file__).resolve().parents[2] / "shared" / "upstream" / "e0397123-FLR-787bce6"


@pytest.mark.skipif(not (UPSTREAM / "utils.py").exists(), reason=f"the authors' files are not at {UPSTREAM}")
def test_converters_on_the_authors_real_files_equal_the_mirror(tmp_path, data_ready):
    """``flr data`` without a mirror: the unmodified utils.py / README.md must give the mirror's JSON files."""
    mirror = mirror_dir() / "paper"
    bank = _followups_from_utils((UPSTREAM / "utils.py").read_text(encoding="utf-8"))
    elo = _elo_from_readme((UPSTREAM / "README.md").read_text(encoding="utf-8"))
    want_bank = json.loads((mirror / "followups.json").read_text(encoding="utf-8"))
    want_elo = json.loads((mirror / "arena_elo_2024-06-07.json").read_text(encoding="utf-8"))
    assert bank == want_bank and list(bank["categories"]) == list(want_bank["categories"])
    assert elo == want_elo and list(elo["elo"]) == list(want_elo["elo"]) and len(elo["elo"]) == 30
    assert elo["elo"]["gemma-2b-it"] == 978.0
    for path, src_file, convert in (("paper/followups.json", "utils.py", "followups"),
                                    ("paper/arena_elo_2024-06-07.json", "README.md", "elo")):
        # the download path itself, from a file:// URL of the real file: byte-identical to the mirror
        _download(Source(path, (UPSTREAM / src_file).as_uri(), False, "paper", convert), tmp_path / path, 5)
        assert (tmp_path / path).read_bytes() == (mirror_dir() / path).read_bytes(), path


def test_offline_switch_blocks_downloads_even_when_asked(tmp_path, monkeypatch):
    import urllib.request

    calls = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: calls.append(a))
    for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("FLR_OFFLINE", "1")
    with pytest.raises(DataMissing, match="this run is offline"):
        fetch(dest=tmp_path / "d", mirror=tmp_path / "nomirror", online=True, only=["paper/"], verbose=False)
    assert calls == []


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
