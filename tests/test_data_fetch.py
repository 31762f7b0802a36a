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


def test_every_source_has_a_recorded_checksum():
    from flrlib.data.fetch import checksums
    sums = checksums()
    assert {s.path for s in sources()} == set(sums) and all(len(v) == 64 for v in sums.values())


def _truncated_mirror(tmp_path, data_ready, rel="hh-rlhf/helpful-base/test.jsonl.gz"):
    mirror = tmp_path / "mirror"
    (mirror / rel).parent.mkdir(parents=True)
    blob = (data_ready / rel).read_bytes()
    (mirror / rel).write_bytes(blob[: len(blob) // 2])  # a cut copy, as a broken transfer leaves it
    return mirror, rel, blob


def test_a_truncated_gz_in_the_mirror_is_refused_and_not_copied(tmp_path, data_ready):
    from flrlib.data.fetch import Corrupt
    mirror, rel, _ = _truncated_mirror(tmp_path, data_ready)
    with pytest.raises(Corrupt, match=rf"{mirror / rel}: damaged gzip stream.*repair the mirror"):
        fetch(dest=tmp_path / "d", mirror=mirror, online=False, only=["hh-rlhf/helpful-base"], verbose=False)
    assert not (tmp_path / "d" / rel).exists() and not list((tmp_path / "d").rglob("*.part*"))


def test_a_damaged_file_already_present_is_refused_on_every_run_with_the_repair(tmp_path, data_ready):
    from flrlib.data.fetch import Corrupt
    from flrlib.files import BadFile, read_jsonl
    mirror, rel, blob = _truncated_mirror(tmp_path, data_ready)
    dest = tmp_path / "d"
    (dest / rel).parent.mkdir(parents=True)
    (dest / rel).write_bytes(blob[: len(blob) // 2])
    for _ in range(2):  # not "already present": refused each time
        with pytest.raises(Corrupt, match=rf"{dest / rel}: damaged gzip stream.*delete it and run `flr data`"):
            fetch(dest=dest, mirror=data_ready, online=False, only=["hh-rlhf/helpful-base"], verbose=False)
    with pytest.raises(BadFile, match=rf"{dest / rel}: damaged gzip file"):  # a loader names the file too
        read_jsonl(dest / rel)
    # altered but well-formed content: the checksum, not gzip, catches it
    import gzip
    (dest / rel).write_bytes(gzip.compress(gzip.decompress(blob)[:-10], mtime=0))
    with pytest.raises(Corrupt, match=r"differs from the recorded"):
        fetch(dest=dest, mirror=data_ready, online=False, only=["hh-rlhf/helpful-base"], verbose=False)
    (dest / rel).unlink()  # the repair the message names
    assert fetch(dest=dest, mirror=data_ready, online=False, only=["hh-rlhf/helpful-base"], verbose=False)["copied"] == 1
    # a recompressed copy (other zlib, other gzip bytes) of the right content passes
    (dest / rel).write_bytes(gzip.compress(gzip.decompress(blob), compresslevel=1, mtime=0))
    assert fetch(dest=dest, mirror=data_ready, online=False, only=["hh-rlhf/helpful-base"], verbose=False)["present"] == 1


def test_a_download_that_does_not_match_is_not_written(tmp_path):
    from flrlib.data.fetch import Corrupt
    fake = tmp_path / "utils.py"  # a well-formed bank that is not the paper's
    fake.write_text("\n".join(f"{c}_pos = ['good']\n{c}_neg = ['bad']" for c in
                              ["understanding", "relevance", "correctness", "engagingness", "informativeness",
                               "following"]))
    src = Source("paper/followups.json", fake.as_uri(), False, "paper", convert="followups")
    with pytest.raises(Corrupt, match=r"differs from the recorded.*did not match"):
        _download(src, tmp_path / "d/paper/followups.json", 5)
    assert not (tmp_path / "d/paper/followups.json").exists()


HUB_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hub"


def test_prefetch_locks_every_hub_repo_of_the_paper_profile_and_offline_runs_read_only_that(tmp_path, monkeypatch):
    """The download function is the only network call: here it reads a local folder laid out like the Hub."""
    from flrlib.data import hub
    from flrlib.data.registry import load_benchmark

    folder = tmp_path / "hub"
    need = hub.profile_needs("paper")
    datasets_needed = {n["repo_id"] for n in need if n["repo_type"] == "dataset"}
    assert {"stanfordnlp/SHP", "berkeley-nest/Nectar", "openbmb/UltraFeedback", "lmsys/mt_bench_human_judgments"} <= \
        datasets_needed
    assert {n["repo_id"] for n in need if n["repo_type"] == "model"} == {"meta-llama/Meta-Llama-3-8B-Instruct",
                                                                         "Qwen/Qwen2-7B-Instruct"}
    calls = []
    fake = hub.folder_download(HUB_FIXTURES)

    def download(rid, rtype, rev, dest):
        calls.append(rid)
        if rtype == "model":  # no model weights in the fixtures: a model repo of one config file
            (tmp_path / "models" / rid).mkdir(parents=True, exist_ok=True)
            (tmp_path / "models" / rid / "config.json").write_text("{}")
            return hub.folder_download(tmp_path / "models")(rid, rtype, rev, dest)
        return fake(rid, rtype, rev, dest)

    monkeypatch.setenv("FLR_DATA_DIR", str(tmp_path / "data"))
    urls = {n["repo_id"]: n["revision"] for n in need if n["repo_type"] == "url"}
    assert set(urls.values()) == {"prometheus/flask_eval.json", "rm_bench/math_filtered.json"}  # into the data folder
    report = hub.prefetch("paper", folder, download=download, verbose=False, fetch_url=lambda url: b"[]")
    assert sorted(report["downloaded"]) == sorted(n["repo_id"] if n["repo_type"] != "url" else n["revision"]
                                                  for n in need) and not report["failed"]
    assert (tmp_path / "data" / "prometheus" / "flask_eval.json").read_bytes() == b"[]"
    lock = hub.read_lock(folder)
    assert set(lock["datasets"]) == datasets_needed and all(len(e["revision"]) == 40 for e in lock["datasets"].values())
    again = hub.prefetch("paper", folder, download=download, verbose=False, fetch_url=None)  # resumes
    assert again["downloaded"] == [] and len(calls) == len(need) - len(urls)

    monkeypatch.setenv("FLR_HUB_DIR", str(folder))
    monkeypatch.setenv("FLR_OFFLINE", "1")
    recs, rep = load_benchmark("shp")  # datasets.load_dataset on the locked snapshot folder, no network
    assert rep["rows_total"] == 3 and {r["chosen"][:9] for r in recs} >= {"Sunlight ", "They show"}
    recs, rep = load_benchmark("mt_bench_human")  # parquet + README configs, split "human"
    assert rep["rows_total"] == 3 and rep["dropped"] == {"tie": 1}
    assert load_benchmark("alpaca_farm")[1]["rows_total"] == 3  # one file of the repo (hf_hub_download's path)
    assert load_benchmark("helpsteer")[1]["rows_total"] == 3 and load_benchmark("feedback_bench")[1]["rows_total"] == 3
    assert len(hub.load_hub_dataset("berkeley-nest/Nectar", None, "train")) == 9
    assert hub.use_locked_models(folder) == ["Qwen/Qwen2-7B-Instruct", "meta-llama/Meta-Llama-3-8B-Instruct"]
    import os
    assert os.environ["HF_HUB_CACHE"] == str(folder)

    # a revision that differs from the lock is refused
    locked = lock["datasets"]["stanfordnlp/SHP"]["revision"]
    with pytest.raises(DataMissing, match=f"revision {'a' * 40} is asked for.*locks {locked}"):
        hub.hub_rows("shp", "stanfordnlp/SHP", None, "test", revision="a" * 40)
    assert hub.hub_rows("shp", "stanfordnlp/SHP", None, "test", revision=locked)  # the locked commit is fine
    # offline, a repo that was not prefetched is refused with what to do
    with pytest.raises(DataMissing, match=r"allenai/x was not prefetched.*flr data --prefetch"):
        hub.hub_rows("x", "allenai/x", None, "test")
    # a model ref changed after the prefetch is refused
    ref = hub.repo_folder(folder, "Qwen/Qwen2-7B-Instruct", "model") / "refs" / "main"
    ref.write_text("b" * 40)
    with pytest.raises(DataMissing, match="refs/main says " + "b" * 40):
        hub.use_locked_models(folder)


def test_prefetch_cli_lists_what_failed_and_refuses_to_run_offline(tmp_path, monkeypatch, capsys):
    from flrlib.cli import main
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "snapshot_download",  # the one network call, replaced: nothing leaves here
                        lambda *a, **k: (_ for _ in ()).throw(ConnectionError("no network here")))
    from flrlib.data import hub
    monkeypatch.setattr(hub, "url_bytes", lambda url: (_ for _ in ()).throw(ConnectionError("no network here")))
    monkeypatch.setenv("FLR_DATA_DIR", str(tmp_path / "data"))
    for v in ("FLR_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    assert main(["data", "--prefetch", "--profile", "paper", "--hub-dir", str(tmp_path / "h")]) == 2
    err = capsys.readouterr().err
    assert "could not be prefetched" in err and "dataset stanfordnlp/SHP: ConnectionError: no network here" in err
    assert "meta-llama/Meta-Llama-3-8B-Instruct (gated" in err and "file https://raw.githubusercontent.com/" in err
    monkeypatch.setenv("FLR_OFFLINE", "1")
    assert main(["data", "--prefetch", "--profile", "paper", "--hub-dir", str(tmp_path / "h")]) == 2
    assert "this run is offline" in capsys.readouterr().err
