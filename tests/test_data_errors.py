"""Every bad input: a message naming file, line or record and the problem; exit 1; no output folder left."""

import json

import pytest

from reaemb_trl.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:no item file given")

REVIEW = {"rating": 5.0, "parent_asin": "A", "user_id": "u1", "timestamp": 1}
META = [json.dumps({"parent_asin": item, "title": f"Item {item}"}) for item in "AB"]


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def run_prepare(tmp_path, capsys, fmt, interactions, items=None, *extra):
    argv = ["prepare", fmt, "--interactions", str(interactions), "--output", str(tmp_path / "out"), *extra]
    code = main(argv + (["--items", str(items)] if items else []))
    return code, capsys.readouterr().err


def reviews(*records):
    return [json.dumps({**REVIEW, **record}) for record in records]


def assert_rejected(tmp_path, code, err, *fragments):
    assert code == 1
    for fragment in fragments:
        assert fragment in err
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary folder left


def test_malformed_json_line(tmp_path, capsys):
    inter = write(tmp_path / "reviews.jsonl", reviews({}) + ['{"rating": 5.0, "parent_asin": "A",'])
    code, err = run_prepare(tmp_path, capsys, "amazon2023", inter, write(tmp_path / "meta.jsonl", META))
    assert_rejected(tmp_path, code, err, "reviews.jsonl, line 2: malformed JSON")


def test_missing_required_field(tmp_path, capsys):
    lines = reviews({}, {"user_id": "u2"}) + [json.dumps({"rating": 4.0, "parent_asin": "B", "timestamp": 3})]
    code, err = run_prepare(tmp_path, capsys, "amazon2023", write(tmp_path / "reviews.jsonl", lines))
    assert_rejected(tmp_path, code, err, "reviews.jsonl, line 3: missing required field 'user_id'")


def test_missing_required_meta_field(tmp_path, capsys):
    meta = write(tmp_path / "meta.jsonl", META + [json.dumps({"title": "no id"})])
    code, err = run_prepare(tmp_path, capsys, "amazon2023", write(tmp_path / "r.jsonl", reviews({})), meta)
    assert_rejected(tmp_path, code, err, "meta.jsonl, line 3: missing required field 'parent_asin'")


def test_unknown_format(tmp_path, capsys):
    code, err = run_prepare(tmp_path, capsys, "goodreads", write(tmp_path / "r.jsonl", reviews({})))
    assert_rejected(tmp_path, code, err, "unknown format 'goodreads'", "amazon2023", "movielens")


def test_non_utf8_bytes(tmp_path, capsys):
    inter = tmp_path / "reviews.jsonl"
    inter.write_bytes((reviews({})[0] + "\n").encode() + b'{"user_id": "u\xff", "parent_asin": "A"}\n')
    code, err = run_prepare(tmp_path, capsys, "amazon2023", inter)
    assert_rejected(tmp_path, code, err, "reviews.jsonl, line 2: bytes that are not valid utf-8")


def test_non_utf8_bytes_in_a_json_document(tmp_path, capsys):
    inter = tmp_path / "inter.json"
    inter.write_bytes(b'{\n"0": [0, 1],\n"1": ["\xe9"]\n}')
    code, err = run_prepare(tmp_path, capsys, "seqjson", inter)
    assert_rejected(tmp_path, code, err, "inter.json, line 3: bytes that are not valid utf-8")


def test_malformed_json_document(tmp_path, capsys):
    inter = tmp_path / "inter.json"
    inter.write_text('{\n"0": [0, 1],\n"1": [2, 3\n}')
    code, err = run_prepare(tmp_path, capsys, "seqjson", inter)
    assert_rejected(tmp_path, code, err, "inter.json, line 4: malformed JSON")


def test_wrong_field_count(tmp_path, capsys):
    inter = write(tmp_path / "u.data", ["1\t10\t5\t100", "2\t11\t5"])
    code, err = run_prepare(tmp_path, capsys, "movielens", inter)
    assert_rejected(tmp_path, code, err, "u.data, line 2: expected 4 fields separated by '\\t', found 3")


def test_unknown_item_is_an_error_or_dropped_and_counted(tmp_path, capsys):
    inter = write(tmp_path / "reviews.jsonl", reviews({}, {"parent_asin": "Z", "timestamp": 2}, {"parent_asin": "B"}))
    meta = write(tmp_path / "meta.jsonl", META)
    code, err = run_prepare(tmp_path, capsys, "amazon2023", inter, meta)
    assert_rejected(tmp_path, code, err, "reviews.jsonl, line 2: item 'Z' is not in the item file", "meta.jsonl",
                    "--drop-unknown-items")

    code, _ = run_prepare(tmp_path, capsys, "amazon2023", inter, meta, "--drop-unknown-items")
    assert code == 0
    metadata = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert metadata["counts"]["dropped_unknown_items"] == 1 and metadata["counts"]["interactions"] == 2


def test_unknown_item_in_a_sequence_file_names_the_user(tmp_path, capsys):
    inter = tmp_path / "inter.json"
    inter.write_text(json.dumps({"0": [0, 1], "7": [1, 5]}))
    items = tmp_path / "items.json"
    items.write_text(json.dumps({"0": {"title": "a"}, "1": {"title": "b"}}))
    code, err = run_prepare(tmp_path, capsys, "seqjson", inter, items)
    assert_rejected(tmp_path, code, err, "inter.json, user '7': item '5' is not in the item file")


@pytest.mark.parametrize("fmt, name", [("amazon2023", "reviews.jsonl"), ("csv", "inter.csv"),
                                       ("seqjson", "inter.json"), ("recbole", "x.inter")])
def test_empty_input(tmp_path, capsys, fmt, name):
    inter = tmp_path / name
    inter.write_text("\n" if fmt != "csv" else "user,item\n")
    code, err = run_prepare(tmp_path, capsys, fmt, inter)
    assert_rejected(tmp_path, code, err, f"{name}: empty input")


def test_empty_item_file(tmp_path, capsys):
    code, err = run_prepare(tmp_path, capsys, "amazon2023", write(tmp_path / "r.jsonl", reviews({})),
                            write(tmp_path / "meta.jsonl", []))
    assert_rejected(tmp_path, code, err, "meta.jsonl: empty input (no items)")


def test_every_user_filtered_out_by_kcore(tmp_path, capsys):
    inter = write(tmp_path / "reviews.jsonl", reviews({}, {"user_id": "u2", "parent_asin": "B"}))
    code, err = run_prepare(tmp_path, capsys, "amazon2023", inter, None, "--min-user-interactions", "2")
    assert_rejected(tmp_path, code, err, "reviews.jsonl: every user was filtered out", "users >= 2")


def test_min_rating_without_ratings(tmp_path, capsys):
    inter = write(tmp_path / "inter.txt", ["1 1", "1 2"])
    code, err = run_prepare(tmp_path, capsys, "reaemb", inter, None, "--min-rating", "4")
    assert_rejected(tmp_path, code, err, "inter.txt: --min-rating given but this input has no ratings")


def test_missing_input_file(tmp_path, capsys):
    code, err = run_prepare(tmp_path, capsys, "csv", tmp_path / "nope.csv")
    assert_rejected(tmp_path, code, err, "nope.csv: interactions file not found")


def test_existing_output_folder_is_refused_unless_overwrite(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    inter = write(tmp_path / "inter.txt", ["1 1", "1 2", "2 2"])
    code, err = run_prepare(tmp_path, capsys, "reaemb", inter)
    assert code == 1 and "output folder exists and is not empty" in err and "--overwrite" in err
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"

    (tmp_path / "out" / "keep.txt").unlink()
    with pytest.warns(UserWarning, match="empty text"):
        assert run_prepare(tmp_path, capsys, "reaemb", inter)[0] == 0
        code, _ = run_prepare(tmp_path, capsys, "reaemb", inter, None, "--overwrite")  # replaces its own output
    assert code == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "cooccurrence.npz", "dataset.json", "inter.txt", "items.jsonl"]


def test_unknown_prepare_option_is_an_input_error(tmp_path):
    from reaemb_trl.data import prepare_dataset
    from reaemb_trl.errors import InputError

    inter = write(tmp_path / "inter.txt", ["1 1", "1 2"])
    with pytest.raises(InputError, match="unknown prepare option.*min_users"):
        prepare_dataset("reaemb", inter, output=tmp_path / "out", min_users=3)


def test_repeated_user_in_a_sequence_file_is_named(tmp_path, capsys):
    inter = write(tmp_path / "inter.json", ['{"u1": [1, 2, 3], "u2": [1, 2], "u1": [9]}'])
    code, err = run_prepare(tmp_path, capsys, "seqjson", inter)
    assert_rejected(tmp_path, code, err, "inter.json", "the key 'u1' appears more than once")


def test_boolean_is_no_item_id(tmp_path, capsys):
    inter = write(tmp_path / "inter.json", ['{"u1": [1, 2, 3], "u2": [true, 1]}'])
    code, err = run_prepare(tmp_path, capsys, "seqjson", inter)
    assert_rejected(tmp_path, code, err, "inter.json, user 'u2': expected a list of item ids")


def test_json_nested_too_deeply(tmp_path, capsys):
    inter = write(tmp_path / "inter.json", ["[" * 100_000 + "]" * 100_000])
    code, err = run_prepare(tmp_path, capsys, "seqjson", inter)
    assert_rejected(tmp_path, code, err, "inter.json: JSON nested too deeply")


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_damaged_gzip_document(tmp_path, capsys, damage):
    import gzip

    packed = gzip.compress(json.dumps({f"u{k}": [k, k + 1, k + 2] for k in range(2000)}).encode())
    if damage == "truncated":
        packed = packed[: len(packed) // 2]
    else:
        packed = packed[:40] + bytes(b ^ 0xFF for b in packed[40:80]) + packed[80:]
    inter = tmp_path / "inter.json.gz"
    inter.write_bytes(packed)
    code, err = run_prepare(tmp_path, capsys, "seqjson", inter)
    assert_rejected(tmp_path, code, err, "inter.json.gz: damaged gzip file")


def test_overwrite_never_deletes_a_folder_holding_an_input(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    inter = write(raw / "inter.json", ['{"u1": [1, 2, 3], "u2": [2, 3, 1]}'])
    notes = write(raw / "NOTES.txt", ["mine"])
    code = main(["prepare", "seqjson", "--interactions", str(inter), "--output", str(raw), "--overwrite"])
    assert code == 1 and "would delete the input" in capsys.readouterr().err
    assert inter.is_file() and notes.is_file()


def test_overwrite_replaces_only_what_the_toolkit_wrote(tmp_path, capsys):
    inter = write(tmp_path / "inter.json", ['{"u1": [1, 2, 3], "u2": [2, 3, 1]}'])
    foreign = tmp_path / "out"
    foreign.mkdir()
    write(foreign / "thesis.tex", ["mine"])
    code, err = run_prepare(tmp_path, capsys, "seqjson", inter, None, "--overwrite")
    assert code == 1 and "replaces only a folder this toolkit wrote" in err
    assert (foreign / "thesis.tex").is_file()
    (foreign / "thesis.tex").unlink()
    assert run_prepare(tmp_path, capsys, "seqjson", inter)[0] == 0  # empty folder: fine
    assert run_prepare(tmp_path, capsys, "seqjson", inter, None, "--overwrite")[0] == 0  # a prepared folder: replaced
    assert (foreign / "dataset.json").is_file()


def test_overwrite_refuses_the_working_directory(tmp_path, capsys, monkeypatch):
    inter = write(tmp_path / "inter.json", ['{"u1": [1, 2, 3], "u2": [2, 3, 1]}'])
    monkeypatch.chdir(tmp_path)
    code = main(["prepare", "seqjson", "--interactions", "inter.json", "--output", ".", "--overwrite"])
    assert code == 1 and "working directory" in capsys.readouterr().err
    assert inter.is_file()


def test_output_that_is_a_file_is_refused(tmp_path, capsys):
    inter = write(tmp_path / "inter.json", ['{"u1": [1, 2, 3], "u2": [2, 3, 1]}'])
    write(tmp_path / "out", ["a file"])
    code, err = run_prepare(tmp_path, capsys, "seqjson", inter)
    assert code == 1 and "is a file, not a folder" in err
