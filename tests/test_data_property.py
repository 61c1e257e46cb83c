"""Property: a random small log, written in a format's real schema, prepares to exactly the sequences computed here
by hand, or stops with an InputError (and then leaves no folder behind); never another exception."""

import csv
import io
import json
import math
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from reaemb_trl.data import PreparedDataset, prepare_dataset
from reaemb_trl.errors import InputError

# Ids repeat often (a small pool), mix scripts, and carry spaces the readers trim. A messy log also has empty
# fields, ids the format refuses and numbers that are none (nan, inf); numbers tie often.
TEXT_IDS, BAD_TEXT_IDS = ["u1", "u2", "é", "中文", "𝔘𝔫", "a b", "a,b", 'q"t', "<b>"], [""]
INTEGER_IDS, BAD_INTEGER_IDS = ["1", "2", "07", "7", "12"], ["x1", "1.5", "-3", ""]  # the reference numbers ids
PADDING = ["", "", " ", "\u00a0"]
NUMBERS, BAD_NUMBERS = ["0", "1", "1", "2", "2.5", "5"], ["", "nan", "inf", "x"]
TITLES = ["Amélie", "Café Noir", "Über", "Plain", "naïve", "中文"]  # MovieLens item file: utf-8 or latin-1

FORMATS = ("csv", "recbole", "seqjson", "reaemb", "movielens", "amazon2023")
KEEPS_REPEATS = ("seqjson", "reaemb")
# Line formats whose row of blank fields is a blank line (skipped like one); the others have a record there.
BLANK_ROW_SKIPPED = ("csv", "recbole", "reaemb")


def logs(fmt):
    good, bad = (INTEGER_IDS, BAD_INTEGER_IDS) if fmt == "reaemb" else (TEXT_IDS, BAD_TEXT_IDS)

    def rows(messy):
        ids = st.tuples(st.sampled_from(PADDING), st.sampled_from(good + bad * messy), st.sampled_from(PADDING))
        numbers = st.sampled_from(NUMBERS + BAD_NUMBERS * messy)
        return st.lists(st.tuples(ids.map("".join), ids.map("".join), numbers, numbers), max_size=8)

    return st.booleans().flatmap(rows)


# ------------------------------------------------------------------------------------- the computation by hand
def _id(fmt, text):
    text = text.strip()
    if fmt == "reaemb":
        return str(int(text)) if text.isascii() and text.isdigit() else None
    return text or None


def _number(text):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def expected_sequences(fmt, rows):
    """Per user (in order of first appearance), the item ids in time order; None where the input is invalid."""
    if fmt == "seqjson":
        return _expected_seqjson(rows)
    timed = fmt not in KEEPS_REPEATS
    events = []
    for k, (user, item, rating, time) in enumerate(rows):
        fields = (user, item, rating, time) if timed else (user, item)
        if fmt in BLANK_ROW_SKIPPED and not any(field.strip() for field in fields):
            continue
        user, item = _id(fmt, user), _id(fmt, item)
        if user is None or item is None or (timed and (_number(rating) is None or _number(time) is None)):
            return None
        events.append((user, item, _number(time) if timed else k, k))
    if not events:
        return None
    users = list(dict.fromkeys(user for user, *_ in events))
    return [_visits([(key, item) for u, item, *key in events if u == user], fmt in KEEPS_REPEATS)
            for user in users]


def _visits(keyed_items, keep_repeats):
    items = [item for _, item in sorted(keyed_items, key=lambda pair: pair[0])]
    return items if keep_repeats else list(dict.fromkeys(items))


def _expected_seqjson(rows):
    document = _seqjson_document(rows)
    trimmed = [user.strip() for user in document]
    if not document or not all(trimmed) or len(set(trimmed)) < len(trimmed):
        return None
    sequences = [[str(item).strip() for item in items] for items in document.values()]
    return sequences if all(all(sequence) for sequence in sequences) else None


# ---------------------------------------------------------------------------------------- each format's schema
def _seqjson_document(rows):
    document = {}
    for user, item, _, _ in rows:
        document.setdefault(user, []).append(int(item) if item.isdigit() else item)  # JSON ids: int or string
    return document


def write_log(fmt, rows, folder: Path) -> Path:
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["user", "item", "timestamp", "rating"])
        writer.writerows([user, item, time, rating] for user, item, rating, time in rows)
        lines = buffer.getvalue().splitlines()
    elif fmt == "recbole":
        lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
        lines += ["\t".join(row) for row in rows]
    elif fmt == "reaemb":
        lines = [f"{user} {item}" for user, item, _, _ in rows]
    elif fmt == "movielens":
        lines = ["::".join(row) for row in rows]
    elif fmt == "amazon2023":
        lines = [json.dumps({"user_id": user, "parent_asin": item, "rating": rating, "timestamp": time,
                             "text": "ok"}, ensure_ascii=False) for user, item, rating, time in rows]
    else:
        lines = [json.dumps(_seqjson_document(rows), ensure_ascii=False)]
    path = folder / {"csv": "inter.csv", "recbole": "log.inter", "reaemb": "inter.txt", "movielens": "ratings.dat",
                     "amazon2023": "reviews.jsonl", "seqjson": "inter.json"}[fmt]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_movies(items, titles, folder: Path) -> tuple[Path, str]:
    """movies.dat in latin-1 (MovieLens 1M) when every character allows it, else in utf-8 (later dumps)."""
    text = "".join(f"{item}::{titles[item]}::Comedy\n" for item in items)
    try:
        data = text.encode("latin-1")
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    (folder / "movies.dat").write_bytes(data)
    try:
        data.decode("utf-8")
        return folder / "movies.dat", "utf-8"
    except UnicodeDecodeError:
        return folder / "movies.dat", "latin-1"


# --------------------------------------------------------------------------------------------------- the test
def check(fmt, rows, titles=None):
    expected = expected_sequences(fmt, rows)
    event("refused" if expected is None else "prepared")  # both kinds must be common: --hypothesis-show-statistics
    with tempfile.TemporaryDirectory() as tmp:  # not tmp_path: one folder per example
        folder = Path(tmp)
        inter = write_log(fmt, rows, folder)
        items, encoding = None, None
        if titles is not None and expected is not None:
            used = list(dict.fromkeys(item for sequence in expected for item in sequence))
            items, encoding = write_movies(used, {item: titles[k % len(titles)] for k, item in enumerate(used)},
                                           folder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no item file given"
            try:
                out = prepare_dataset(fmt, inter, items, output=folder / "out", show_progress=False)
            except InputError:
                assert expected is None, f"refused a valid log: {rows!r}"
                assert sorted(path.name for path in folder.iterdir()) == sorted(
                    path.name for path in (inter, items) if path is not None)  # no folder left behind
                return
        assert expected is not None, f"accepted an invalid log: {rows!r}"
        ds = PreparedDataset.load(out)
        assert [[ds.source_ids[item - 1] for item in sequence] for sequence in ds.sequences] == expected
        if items is not None:
            assert ds.metadata["inputs"]["items"]["encoding"] == encoding
            assert [ds.item_attributes(i)[0][1] for i in range(1, ds.num_items + 1)] == [
                titles[k % len(titles)] for k in range(ds.num_items)]  # never "AmÃ©lie"


@pytest.mark.parametrize("fmt", [fmt for fmt in FORMATS if fmt != "movielens"])
@settings(max_examples=100, deadline=None, database=None)  # nothing written to the checkout
@given(data=st.data())
def test_prepare_matches_the_computation_by_hand_or_refuses(fmt, data):
    check(fmt, data.draw(logs(fmt)))


@settings(max_examples=100, deadline=None, database=None)  # nothing written to the checkout
@given(rows=logs("movielens"), titles=st.lists(st.sampled_from(TITLES), min_size=1, max_size=4))
def test_movielens_with_an_item_file_in_either_encoding(rows, titles):
    check("movielens", rows, titles)
