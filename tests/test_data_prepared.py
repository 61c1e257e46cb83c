"""The prepared folder: item text rules, filters, metadata, options, and PreparedDataset.load."""

import json

import numpy as np
import pytest

from reaemb_trl.data import PreparedDataset, join_attributes, prepare, prepare_dataset, sample_dataset_files
from reaemb_trl.data.cooccurrence import FlatSequences
from reaemb_trl.data.text import clean_value, item_attributes
from reaemb_trl.errors import InputError
from reaemb_trl.io_utils import sha256_file


def test_clean_value_rules():
    assert clean_value("AT&amp;T phone;\n  two\tlines") == "AT&T phone, two lines"
    assert clean_value("x" * 150) == "x" * 100 and clean_value("x" * 150, max_chars=10) == "x" * 10
    assert clean_value([["Office", "Pens"], "Gel"]) == "Office, Pens, Gel"
    assert clean_value({"Color": "Blue", "Size": ""}) == "Color: Blue"
    assert clean_value(9.5) == "9.5" and clean_value(None) == ""


def test_clean_value_strips_markup_but_not_comparisons():
    assert clean_value("&lt;script&gt;alert(1)&lt;/script&gt;Nice pen") == "Nice pen"
    assert clean_value("<p class='x'>Blue<br/>ink</p><!-- [if gte mso 9] -->") == "Blue ink"
    assert clean_value("<STYLE>p {color: red}</style>Red &lt;b&gt;pen&lt;/b&gt;") == "Red pen"
    assert clean_value("Idle current < 40mA, a <= b") == "Idle current < 40mA, a <= b"


def test_item_attributes_put_title_first_and_skip_empty_values():
    fields = {"brand": "Pilot", "description": "", "title": "G2 &quot;Gel&quot;", "main_category": "Office"}
    assert item_attributes(fields) == [("title", 'G2 "Gel"'), ("brand", "Pilot"), ("main category", "Office")]
    assert join_attributes(item_attributes(fields)) == 'title is G2 "Gel"; brand is Pilot; main category is Office'


def test_prepared_sample_folder_contract(prepared_sample):
    ds = PreparedDataset.load(prepared_sample)
    assert ds.item_texts[0] == "" and len(ds.item_texts) == ds.num_items + 1 and ds.has_text
    assert all(join_attributes(ds.item_attributes(i)) == ds.item_texts[i] for i in range(1, ds.num_items + 1))
    assert all(len(value) <= 100 and ";" not in value and "\n" not in value
               for i in range(1, ds.num_items + 1) for _, value in ds.item_attributes(i))
    # Item "2" of the sample has "AT&amp;T" in its title.
    assert ds.item_texts[3].startswith("title is AT&T 210 Corded Phone, Black, 1 Handset; description is ")
    raw_item = json.loads(sample_dataset_files()[1].read_text())["2"]
    assert json.loads((prepared_sample / "items.jsonl").read_text().splitlines()[2])["fields"] == raw_item

    meta = ds.metadata
    assert meta["source_format"] == "seqjson" and ds.sha256 == meta["sha256"] and len(ds.sha256) == 64
    for name, digest in meta["outputs"].items():
        assert sha256_file(prepared_sample / name) == digest
    assert meta["inputs"]["items"]["sha256"] == sha256_file(sample_dataset_files()[1])
    counts = meta["counts"]
    lengths = np.array([len(seq) for seq in ds.sequences])
    assert counts["mean_length"] == pytest.approx(53258 / 4905)
    assert counts["sparsity"] == pytest.approx(1 - 53258 / (4905 * 2420))
    assert counts["short_user_share"] == pytest.approx((lengths < 10).mean())
    popularity = np.bincount(np.concatenate(ds.sequences), minlength=2421)[1:]
    assert counts["tail_item_share"] == pytest.approx((popularity < 20).mean())
    assert meta["parameters"]["max_value_chars"] == 100 and meta["parameters"]["holdout"] == 2
    with pytest.raises(IndexError):
        ds.item_attributes(0)


def test_preparing_twice_gives_the_same_fingerprint_and_options_change_it(tmp_path, prepared_sample):
    inter, items = sample_dataset_files()
    again = prepare_dataset("seqjson", inter, items, output=tmp_path / "again", show_progress=False)
    assert PreparedDataset.load(again).sha256 == PreparedDataset.load(prepared_sample).sha256
    short = PreparedDataset.load(prepare_dataset("seqjson", inter, items, output=tmp_path / "short",
                                                 max_value_chars=20, cooc_window=2, show_progress=False))
    assert short.sha256 != PreparedDataset.load(prepared_sample).sha256
    assert all(len(value) <= 20 for i in (1, 2, 3) for _, value in short.item_attributes(i))
    assert short.cooccurrence.sum() < PreparedDataset.load(prepared_sample).cooccurrence.sum()


def test_kcore_is_iterative(tmp_path):
    # u3's only other item X leaves after the first pass, which then drops u3 below 2 and item B below 2
    # (users u1..u4 = 1..4; items A=10, B=20, C=30, B2=22, X=99: this format numbers both).
    rows = ["1 10", "1 20", "2 10", "2 30", "2 22", "3 20", "3 99", "4 30", "4 10", "4 22"]
    inter = tmp_path / "inter.txt"
    inter.write_text("\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match="empty text"):
        out = prepare_dataset("reaemb", inter, output=tmp_path / "out", min_user_interactions=2,
                              min_item_interactions=2)
    ds = PreparedDataset.load(out)
    assert [[ds.source_ids[i - 1] for i in seq] for seq in ds.sequences] == [["10", "30", "22"], ["30", "10", "22"]]
    # Passes: X (item, 1 row), then u3 (user, 1 row left), then u1's B (item), then u1 (user): one row each.
    assert not ds.has_text and ds.metadata["filters"] == {
        "min_rating": 0, "unknown_items": 0, "repeats": 0, "min_user_interactions": 2, "min_item_interactions": 2}


@pytest.mark.parametrize("name, content, message", [
    ("items.jsonl", '{"item_id": 2, "source_id": "x"}\n', "items.jsonl, line 1: item_id 2 breaks the numbering"),
    ("inter.txt", "1 1\n1 x\n", "inter.txt, line 2: expected 'user item'"),
    ("inter.txt", "1 1\n3 1\n", "inter.txt, line 2: users must be numbered 1, 2, ..."),
    ("inter.txt", "1 1\n1 9999\n", "inter.txt, line 2: item 9999 is outside 1..2420"),
    ("inter.txt", "1 1\n\n\n1 9999\n", "inter.txt, line 4: item 9999 is outside 1..2420"),  # blank lines count
    ("inter.txt", "1 1\n\n3 1\n", "inter.txt, line 3: users must be numbered"),
    ("inter.txt", b"1 1\n\n1 \xff\n", "inter.txt, line 3: bytes that are not valid utf-8"),
    ("dataset.json", "{}", "dataset.json: not written by `reaemb-trl prepare` \\(no 'sha256'\\)"),
    ("dataset.json", "", "dataset.json: empty input"),
])
def test_load_rejects_broken_folders(prepared_sample, tmp_path, name, content, message):
    broken = tmp_path / "broken"
    broken.mkdir()
    for part in ("dataset.json", "items.jsonl", "inter.txt"):
        (broken / part).write_bytes((prepared_sample / part).read_bytes())
    (broken / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError, match=message.replace(".", r"\.")):
        PreparedDataset.load(broken)


def test_load_requires_files(prepared_sample, tmp_path):
    with pytest.raises(InputError, match="prepared dataset folder not found"):
        PreparedDataset.load(tmp_path / "missing")
    partial = tmp_path / "partial"
    partial.mkdir()
    for part in ("dataset.json", "items.jsonl", "inter.txt"):
        (partial / part).write_bytes((prepared_sample / part).read_bytes())
    ds = PreparedDataset.load(partial)
    with pytest.raises(InputError, match="cooccurrence.npz: co-occurrence matrix missing"):
        ds.cooccurrence
    (partial / "inter.txt").unlink()
    with pytest.raises(InputError, match="inter.txt is missing"):
        PreparedDataset.load(partial)


def test_inter_txt_written_a_slice_of_users_at_a_time_is_one_line_per_interaction(tmp_path, monkeypatch):
    sequences = FlatSequences(np.array([3, 1, 2, 5, 1, 1, 2], dtype=np.intc), np.array([2, 1, 4]))
    monkeypatch.setattr(prepare, "_WRITE_ROWS", 2)  # three slices, the last user's four lines one of them
    prepare._write_interactions(tmp_path / "inter.txt", sequences)
    assert (tmp_path / "inter.txt").read_text() == "1 3\n1 1\n2 2\n3 5\n3 1\n3 1\n3 2\n"
    stats = prepare._statistics(sequences, 5)
    assert (stats["users"], stats["interactions"], stats["sparsity"]) == (3, 7, 1 - 6 / 15)  # (3, 1) twice
