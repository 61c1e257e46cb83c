"""Every bad input: a message naming file, line or record and the problem; exit 1; no output folder left."""

import json
import os
from pathlib import Path

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
    assert code == 2
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
    assert metadata["filters"]["unknown_items"] == 1 and metadata["counts"]["interactions"] == 2


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
    assert code == 2 and "output folder exists and is not empty" in err and "--overwrite" in err
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
    assert code == 2 and "would delete the input" in capsys.readouterr().err
    assert inter.is_file() and notes.is_file()


def test_overwrite_replaces_only_what_the_toolkit_wrote(tmp_path, capsys):
    inter = write(tmp_path / "inter.json", ['{"u1": [1, 2, 3], "u2": [2, 3, 1]}'])
    foreign = tmp_path / "out"
    foreign.mkdir()
    write(foreign / "thesis.tex", ["mine"])
    code, err = run_prepare(tmp_path, capsys, "seqjson", inter, None, "--overwrite")
    assert code == 2 and "replaces only a folder this toolkit wrote" in err
    assert (foreign / "thesis.tex").is_file()
    (foreign / "thesis.tex").unlink()
    assert run_prepare(tmp_path, capsys, "seqjson", inter)[0] == 0  # empty folder: fine
    assert run_prepare(tmp_path, capsys, "seqjson", inter, None, "--overwrite")[0] == 0  # a prepared folder: replaced
    assert (foreign / "dataset.json").is_file()


def test_overwrite_refuses_the_working_directory(tmp_path, capsys, monkeypatch):
    inter = write(tmp_path / "inter.json", ['{"u1": [1, 2, 3], "u2": [2, 3, 1]}'])
    monkeypatch.chdir(tmp_path)
    code = main(["prepare", "seqjson", "--interactions", "inter.json", "--output", ".", "--overwrite"])
    assert code == 2 and "working directory" in capsys.readouterr().err
    assert inter.is_file()


def test_output_that_is_a_file_is_refused_before_reading(tmp_path, capsys):
    inter = write(tmp_path / "inter.txt", ["1 1", "not read"])  # reading would fail on line 2: it never starts
    write(tmp_path / "out", ["a file"])
    code, err = run_prepare(tmp_path, capsys, "reaemb", inter)
    assert code == 2 and "out: the output path is a file, not a folder" in err and "line 2" not in err
    assert (tmp_path / "out").read_text() == "a file\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_output_under_a_file_is_refused_before_reading(tmp_path, capsys):
    inter = write(tmp_path / "inter.txt", ["1 1", "not read"])
    write(tmp_path / "notes.txt", ["mine"])
    out = tmp_path / "notes.txt" / "sub" / "out"
    code = main(["prepare", "reaemb", "--interactions", str(inter), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f"{out}: cannot write here, {tmp_path / 'notes.txt'} is a file" in err
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inter.txt", "notes.txt"]


def test_output_in_a_folder_that_is_not_writable_is_refused_before_reading(tmp_path, capsys, monkeypatch):
    inter = write(tmp_path / "inter.txt", ["1 1", "not read"])
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: make os.access answer as for another user
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    try:
        code = main(["prepare", "reaemb", "--interactions", str(inter), "--output", str(locked / "new" / "out")])
    finally:
        locked.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 2 and f"cannot write here, {locked} is not writable" in err
    assert list(locked.iterdir()) == []


def test_csv_cell_over_the_field_limit(tmp_path, capsys):
    inter = write(tmp_path / "inter.csv", ["user,item", "u1,a", "u2,b", "u3," + "x" * 140_000, "u4,c"])
    code, err = run_prepare(tmp_path, capsys, "csv", inter)
    assert_rejected(tmp_path, code, err, "inter.csv, line 4: unreadable CSV (field larger than field limit")


def test_stray_carriage_return_in_a_csv_file(tmp_path, capsys):
    inter = tmp_path / "inter.csv"
    inter.write_bytes(b"user,item\nu1,a\ru2,b\n")
    code, err = run_prepare(tmp_path, capsys, "csv", inter)
    assert_rejected(tmp_path, code, err, "inter.csv, line 2: unreadable CSV (new-line character seen in unquoted "
                                         "field)")


@pytest.mark.parametrize("name", ["inter.csv", "reviews.jsonl"])
@pytest.mark.parametrize("bad_line", [2, 5002])
def test_non_utf8_byte_is_reported_on_its_own_line(tmp_path, capsys, name, bad_line):
    # A decoder that reads ahead in 8 KiB blocks reported the line it had reached (4652 for 5002; 1 for 2).
    if name == "inter.csv":
        lines = ["user,item,timestamp"] + [f"u{k % 50},i{k % 70},{k}" for k in range(2, 6001)]
    else:
        lines = reviews(*({"user_id": f"u{k % 50}", "timestamp": k} for k in range(1, 6001)))
    data = [line.encode() for line in lines]
    data[bad_line - 1] = data[bad_line - 1].replace(b"u", b"\xffu", 1)
    inter = tmp_path / name
    inter.write_bytes(b"\n".join(data) + b"\n")
    code, err = run_prepare(tmp_path, capsys, "csv" if name == "inter.csv" else "amazon2023", inter)
    assert_rejected(tmp_path, code, err, f"{name}, line {bad_line}: bytes that are not valid utf-8")


def test_corrupt_gzip_in_a_line_file(tmp_path, capsys):
    import gzip

    packed = gzip.compress("".join(line + "\n" for line in reviews(*({"timestamp": k} for k in range(20_000))))
                           .encode())
    inter = tmp_path / "reviews.jsonl.gz"
    inter.write_bytes(packed[:400] + bytes(b ^ 0xFF for b in packed[400:440]) + packed[440:])
    code, err = run_prepare(tmp_path, capsys, "amazon2023", inter)
    assert_rejected(tmp_path, code, err, "reviews.jsonl.gz: cannot be read")


def test_reaemb_ids_must_be_integers(tmp_path, capsys):
    inter = write(tmp_path / "inter.txt", ["1 2", "2 3", "1 oops"])
    code, err = run_prepare(tmp_path, capsys, "reaemb", inter)
    assert_rejected(tmp_path, code, err, "inter.txt, line 3: item id 'oops' is not an integer")
    items = write(tmp_path / "item_info.jsonline", [json.dumps({"item_id": "2b", "input": "x\n title is T"})])
    code, err = run_prepare(tmp_path, capsys, "reaemb", write(tmp_path / "inter.txt", ["1 2"]), items)
    assert_rejected(tmp_path, code, err, "item_info.jsonline, line 1: item id '2b' is not an integer")


@pytest.mark.parametrize("fmt, lines, message", [
    ("csv", ["user,item,timestamp", "u1,a,1", "u1,b,nan"], "inter, line 3: field 'timestamp' is not a valid number"),
    ("csv", ["user,item,rating", "u1,a,5", "u1,b,inf"], "inter, line 3: field 'rating' is not a valid number"),
    ("movielens", ["1::10::5::1", "1::11::NaN::2"], "inter, line 2: field 'rating' is not a valid number"),
    ("recbole", ["user_id:token\titem_id:token\ttimestamp:float", "1\t2\t-inf"],
     "inter, line 2: field 'timestamp' is not a valid number"),
    ("amazon2023", reviews({}, {"timestamp": float("nan")}), "inter, line 2: field 'timestamp' is not a valid number"),
])
def test_nan_and_inf_are_refused(tmp_path, capsys, fmt, lines, message):
    code, err = run_prepare(tmp_path, capsys, fmt, write(tmp_path / "inter", lines))
    assert_rejected(tmp_path, code, err, message)


@pytest.mark.parametrize("fmt, header, repeated", [
    ("csv", "user,item,user", "user"),
    ("csv", "user, item ,item", "item"),  # names are trimmed like ids
    ("recbole", "user_id:token\titem_id:token\tuser_id:float", "user_id"),
])
def test_repeated_header_column_is_named(tmp_path, capsys, fmt, header, repeated):
    separator = "," if fmt == "csv" else "\t"
    inter = write(tmp_path / "inter", [header, separator.join(["1", "2", "3"])])
    code, err = run_prepare(tmp_path, capsys, fmt, inter)
    assert_rejected(tmp_path, code, err, f"inter, line 1: the header names the column {repeated!r} twice")


def test_missing_header_column_lists_the_columns_found(tmp_path, capsys):
    inter = write(tmp_path / "inter.csv", ["", "usr,item", "u1,a"])
    code, err = run_prepare(tmp_path, capsys, "csv", inter)
    assert_rejected(tmp_path, code, err, "inter.csv, line 2: the header needs a column named 'user' or 'user_id' "
                                         "(it has 'usr', 'item')")


@pytest.mark.parametrize("option", ["--min-user-interactions", "--min-item-interactions", "--max-value-chars"])
def test_negative_counts_are_refused(tmp_path, capsys, option):
    inter = write(tmp_path / "inter.txt", ["1 1", "1 2"])
    code, err = run_prepare(tmp_path, capsys, "reaemb", inter, None, option, "-1")
    assert_rejected(tmp_path, code, err, f"{option} must not be negative, got -1")


@pytest.mark.parametrize("encoding, message", [
    ("klingon", "--encoding: 'klingon' is not a known text encoding"),
    ("base64", "--encoding: 'base64' is not a known text encoding"),
    ("utf-16", "--encoding: 'utf-16' does not read ASCII bytes as ASCII"),
])
def test_unusable_encoding_is_refused_before_reading(tmp_path, capsys, encoding, message):
    inter = write(tmp_path / "inter.txt", ["1 1", "not read"])
    code, err = run_prepare(tmp_path, capsys, "reaemb", inter, None, "--encoding", encoding)
    assert_rejected(tmp_path, code, err, message)


def test_wrong_encoding_given_is_an_error_not_a_misreading(tmp_path, capsys):
    ratings = write(tmp_path / "ratings.dat", ["1::10::5::1", "1::11::4::2"])
    movies = tmp_path / "movies.dat"
    movies.write_bytes("10::Toy Story (1995)::Comedy\n11::Amélie (2001)::Comedy\n".encode("latin-1"))
    code, err = run_prepare(tmp_path, capsys, "movielens", ratings, movies, "--encoding", "utf-8")
    assert_rejected(tmp_path, code, err, "movies.dat, line 2: bytes that are not valid utf-8")
