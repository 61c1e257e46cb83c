"""Every reader on small files in its source's real schema, plus the real shared datasets."""

import gzip
import json
import os
import subprocess
import sys
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from reaemb_trl.data import PreparedDataset, prepare_dataset, sample_dataset_files
from reaemb_trl.data.readers import get_format

# One logical dataset written in every schema: (user, item, rating, time) in input row order.
ROWS = [
    ("u1", "A", 5, 100), ("u1", "B", 4, 50), ("u2", "C", 5, 10), ("u1", "C", 3, 100),  # C ties with A: row order
    ("u2", "A", 2, 20), ("u3", "B", 5, 5), ("u3", "D", 4, 6), ("u2", "B", 5, 30),
    ("u1", "B", 4, 200),  # repeats (u1, B): removed, the earlier one is kept (kept by formats that are sequences)
]
ITEM_FILE_ORDER = ["B", "A", "D", "C", "E"]  # E has no interaction: it is left out
EXPECTED = {"u1": ["B", "A", "C"], "u2": ["C", "A", "B"], "u3": ["B", "D"]}
EXPECTED_WITH_REPEATS = {**EXPECTED, "u1": ["B", "A", "C", "B"]}
KEEPS_REPEATS = ("seqjson", "reaemb")  # files that are sequences already: a repeat visit is data
EXPECTED_MIN_RATING_4 = {"u1": ["B", "A"], "u2": ["C", "B"], "u3": ["B", "D"]}
NUMERIC = {name: str(10 + k) for k, name in enumerate("ABCDE")}
NUMERIC_USERS = {"u1": "7", "u2": "3", "u3": "5"}
TITLES = {"A": "Alpha Pen", "B": "Beta Binder", "C": "Gamma Clip", "D": "Delta Desk", "E": "Eps Eraser"}


def time_ordered_rows():
    return sorted(ROWS, key=lambda row: (row[3], ROWS.index(row)))


def write_lines(path, lines, gz=False):
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_amazon2023(tmp):
    reviews = [json.dumps({"rating": float(r), "title": "ok", "text": "fine", "images": [], "asin": i + "x",
                           "parent_asin": i, "user_id": u, "timestamp": t * 1000, "helpful_vote": 0,
                           "verified_purchase": True}) for u, i, r, t in ROWS]
    meta = [json.dumps({"main_category": "Office Products", "title": TITLES[i], "average_rating": 4.5,
                        "rating_number": 3, "features": ["smooth", "gel ink"] if i == "A" else [],
                        "description": ["Writes well;\nreally &amp; truly"] if i == "A" else [],
                        "price": 9.99 if i == "A" else None, "images": [], "videos": [], "store": "Pilot",
                        "categories": ["Office", "Pens"], "details": {"Color": "Blue"}, "parent_asin": i,
                        "bought_together": None}) for i in ITEM_FILE_ORDER]
    return write_lines(tmp / "reviews.jsonl.gz", reviews, gz=True), write_lines(tmp / "meta.jsonl", meta), {}


def write_amazon2014(tmp):
    reviews = [repr({"reviewerID": u, "asin": i, "reviewerName": "X", "helpful": [0, 0], "reviewText": "t",
                     "overall": float(r), "summary": "s", "unixReviewTime": t, "reviewTime": "01 1, 2014"})
               for u, i, r, t in ROWS]
    meta = [repr({"asin": i, "title": TITLES[i], "price": 9.99, "imUrl": "http://x", "brand": "Pilot",
                  "categories": [["Office Products", "Pens"]], "salesRank": {"Office Products": 5},
                  "related": {"also_bought": ["B"]}}) for i in ITEM_FILE_ORDER]
    return write_lines(tmp / "reviews_Office.json.gz", reviews, gz=True), write_lines(tmp / "meta.json.gz", meta,
                                                                                       gz=True), {}


def write_amazon2018(tmp):
    reviews = [json.dumps({"overall": float(r), "verified": True, "reviewTime": "01 1, 2018", "reviewerID": u,
                           "asin": i, "reviewerName": "X", "reviewText": "t", "summary": "s",
                           "unixReviewTime": t}) for u, i, r, t in ROWS]
    meta = [json.dumps({"category": ["Office Products", "Pens"], "description": ["Smooth."], "title": TITLES[i],
                        "brand": "Pilot", "feature": ["gel"], "main_cat": "Office Products", "price": "$9.99",
                        "asin": i}) for i in ITEM_FILE_ORDER]
    return write_lines(tmp / "Office.json", reviews), write_lines(tmp / "meta_Office.json", meta), {}


def write_yelp(tmp):
    base = datetime(2018, 7, 7, tzinfo=timezone.utc)
    reviews = [json.dumps({"review_id": f"r{k}", "user_id": u, "business_id": i, "stars": float(r), "useful": 0,
                           "funny": 0, "cool": 0, "text": "good",
                           "date": (base + timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S")})
               for k, (u, i, r, t) in enumerate(ROWS)]
    business = [json.dumps({"business_id": i, "name": TITLES[i], "address": "1 Main St", "city": "Tampa",
                            "state": "FL", "postal_code": "33602", "latitude": 27.9, "longitude": -82.4,
                            "stars": 4.0, "review_count": 10, "is_open": 1, "attributes": {"WiFi": "free"},
                            "categories": "Restaurants, Pizza", "hours": None}) for i in ITEM_FILE_ORDER]
    return write_lines(tmp / "review.json", reviews), write_lines(tmp / "business.json", business), {}


def write_movielens_100k(tmp):
    ratings = [f"{NUMERIC_USERS[u]}\t{NUMERIC[i]}\t{r}\t{t}" for u, i, r, t in ROWS]
    flags = "|".join(["0"] * 3 + ["1"] + ["0"] * 15)  # Animation
    movies = [f"{NUMERIC[i]}|{TITLES[i]} (1995)|01-Jan-1995||http://us.imdb.com/x|{flags}" for i in ITEM_FILE_ORDER]
    (tmp / "u.item").write_bytes("\n".join(movies).replace("Alpha", "Alphé").encode("latin-1"))
    return write_lines(tmp / "u.data", ratings), tmp / "u.item", {**NUMERIC_USERS, **NUMERIC}


def write_movielens_1m(tmp):
    ratings = [f"{NUMERIC_USERS[u]}::{NUMERIC[i]}::{r}::{t}" for u, i, r, t in ROWS]
    movies = [f"{NUMERIC[i]}::{TITLES[i]} (1995)::Animation|Comedy" for i in ITEM_FILE_ORDER]
    (tmp / "movies.dat").write_bytes("\n".join(movies).encode("latin-1"))
    return write_lines(tmp / "ratings.dat", ratings), tmp / "movies.dat", {**NUMERIC_USERS, **NUMERIC}


def write_recbole(tmp):
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in ROWS]
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    items += [f"{i}\t{TITLES[i]}\t1995\tAnimation Comedy" for i in ITEM_FILE_ORDER]
    return write_lines(tmp / "toy.inter", inter), write_lines(tmp / "toy.item", items), {}


def write_seqjson(tmp):
    sequences = {}
    for u, i, _, _ in time_ordered_rows():
        sequences.setdefault(u, []).append(i)
    sequences = {u: sequences[u] for u in ("u1", "u2", "u3")}
    items = {i: {"title": TITLES[i], "description": "", "brand": "Pilot", "categories": "Office, Pens"}
             for i in ITEM_FILE_ORDER}
    (tmp / "toy.inter.json").write_text(json.dumps(sequences))
    (tmp / "toy.item.json").write_text(json.dumps(items))
    return tmp / "toy.inter.json", tmp / "toy.item.json", {}


def write_reaemb(tmp):
    order = {u: k for k, u in enumerate(("u1", "u2", "u3"))}
    rows = sorted(time_ordered_rows(), key=lambda row: order[row[0]])
    inter = [f"{NUMERIC_USERS[u]} {NUMERIC[i]}" for u, i, _, _ in rows]
    items = [json.dumps({"input": f"The item has the following attributes: \n title is {TITLES[i]}; brand is Pilot",
                         "target": "", "item": i, "item_id": int(NUMERIC[i])}) for i in ITEM_FILE_ORDER]
    return write_lines(tmp / "inter.txt", inter), write_lines(tmp / "item_info.jsonline", items), \
        {**NUMERIC_USERS, **NUMERIC}


def write_csv(tmp):
    inter = ["user,item,timestamp,rating"] + [f"{u},{i},{t},{r}" for u, i, r, t in ROWS]
    items = ["item,title,brand,description"]
    items += [f'{i},"{TITLES[i]}",Pilot,"two\nlines, quoted"' for i in ITEM_FILE_ORDER]
    return write_lines(tmp / "inter.csv", inter), write_lines(tmp / "items.csv", items), {}


# format, writer, expected text of item A
CASES = {
    "amazon2023": ("amazon2023", write_amazon2023,
                   "title is Alpha Pen; store is Pilot; main category is Office Products; categories is Office, "
                   "Pens; features is smooth, gel ink; description is Writes well, really & truly; details is "
                   "Color: Blue; price is 9.99"),
    "amazon2014": ("amazon2018", write_amazon2014,
                   "title is Alpha Pen; brand is Pilot; categories is Office Products, Pens; price is 9.99"),
    "amazon2018": ("amazon2018", write_amazon2018,
                   "title is Alpha Pen; brand is Pilot; categories is Office Products, Pens; features is gel; "
                   "description is Smooth.; price is $9.99"),
    "yelp": ("yelp", write_yelp, "title is Alpha Pen; categories is Restaurants, Pizza; city is Tampa; state is FL"),
    "movielens-100k": ("movielens", write_movielens_100k,
                       "title is Alphé Pen (1995); genres is Animation; release date is 01-Jan-1995"),
    "movielens-1m": ("movielens", write_movielens_1m, "title is Alpha Pen (1995); genres is Animation, Comedy"),
    "recbole": ("recbole", write_recbole, "title is Alpha Pen; release year is 1995; class is Animation Comedy"),
    "seqjson": ("seqjson", write_seqjson, "title is Alpha Pen; brand is Pilot; categories is Office, Pens"),
    "reaemb": ("reaemb", write_reaemb, "title is Alpha Pen; brand is Pilot"),
    "csv": ("csv", write_csv, "title is Alpha Pen; brand is Pilot; description is two lines, quoted"),
}


def source_sequences(ds, ids):
    return [[ds.source_ids[item - 1] for item in seq] for seq in ds.sequences]


@pytest.mark.parametrize("case", list(CASES))
def test_reader_gives_time_ordered_deduplicated_sequences_and_item_text(case, tmp_path):
    fmt, writer, text_of_a = CASES[case]
    interactions, items, ids = writer(tmp_path)
    ids = {key: ids.get(key, key) for key in [*EXPECTED, *TITLES]}
    ds = PreparedDataset.load(prepare_dataset(fmt, interactions, items, output=tmp_path / "out"))

    keeps = fmt in KEEPS_REPEATS
    expected = EXPECTED_WITH_REPEATS if keeps else EXPECTED
    assert ds.source_ids == [ids[i] for i in ITEM_FILE_ORDER if i != "E"]  # numbered in item-file order
    assert source_sequences(ds, ids) == [[ids[i] for i in expected[u]] for u in ("u1", "u2", "u3")]
    assert ds.item_texts[ds.source_ids.index(ids["A"]) + 1] == text_of_a
    counts = ds.metadata["counts"]
    assert (counts["users"], counts["items"], counts["interactions"]) == (3, 4, 9 if keeps else 8)
    assert ds.metadata["filters"]["repeats"] == (0 if keeps else 1)
    assert ds.metadata["parameters"]["keep_repeats"] is keeps
    assert ds.cooccurrence.diagonal().sum() == 0  # a repeat never pairs an item with itself


@pytest.mark.parametrize("case", ["amazon2023", "movielens-100k", "csv", "yelp"])
def test_min_rating_filter(case, tmp_path):
    fmt, writer, _ = CASES[case]
    interactions, items, ids = writer(tmp_path)
    ids = {key: ids.get(key, key) for key in [*EXPECTED, *TITLES]}
    ds = PreparedDataset.load(prepare_dataset(fmt, interactions, items, output=tmp_path / "out", min_rating=4))
    assert source_sequences(ds, ids) == [[ids[i] for i in EXPECTED_MIN_RATING_4[u]] for u in ("u1", "u2", "u3")]
    assert ds.metadata["filters"]["min_rating"] == 2


def add_bom(path):
    """The UTF-8 byte-order mark that Windows tools write first, inside the gzip layer if there is one."""
    data = path.read_bytes()
    packed = data[:2] == b"\x1f\x8b"
    data = b"\xef\xbb\xbf" + (gzip.decompress(data) if packed else data)
    path.write_bytes(gzip.compress(data) if packed else data)


@pytest.mark.parametrize("case", list(CASES))
def test_a_byte_order_mark_is_no_part_of_the_data(case, tmp_path):
    fmt, writer, text_of_a = CASES[case]
    interactions, items, ids = writer(tmp_path)
    add_bom(interactions)
    if case != "movielens-100k":  # its u.item is latin-1, where a utf-8 mark has no place
        add_bom(items)
    ids = {key: ids.get(key, key) for key in [*EXPECTED, *TITLES]}
    ds = PreparedDataset.load(prepare_dataset(fmt, interactions, items, output=tmp_path / "out"))
    expected = EXPECTED_WITH_REPEATS if fmt in KEEPS_REPEATS else EXPECTED
    assert source_sequences(ds, ids) == [[ids[i] for i in expected[u]] for u in ("u1", "u2", "u3")]
    assert ds.item_texts[ds.source_ids.index(ids["A"]) + 1] == text_of_a


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_movielens_item_file_encoding_is_detected_and_recorded(encoding, tmp_path):
    ratings = write_lines(tmp_path / "ratings.dat", ["1::10::5::1", "1::11::4::2", "2::10::3::3"])
    movies = tmp_path / "movies.dat"
    movies.write_bytes("10::Amélie (2001)::Comedy|Romance\n11::Café Society (2016)::Comedy\n".encode(encoding))
    ds = PreparedDataset.load(prepare_dataset("movielens", ratings, movies, output=tmp_path / "out"))
    assert ds.item_texts[1:] == ["title is Amélie (2001); genres is Comedy, Romance",
                                 "title is Café Society (2016); genres is Comedy"]  # never "AmÃ©lie"
    assert ds.metadata["inputs"]["items"]["encoding"] == encoding
    assert ds.metadata["inputs"]["interactions"]["encoding"] == "utf-8"
    given = PreparedDataset.load(prepare_dataset("movielens", ratings, movies, output=tmp_path / "given",
                                                 encoding=encoding))
    assert given.item_texts == ds.item_texts and given.metadata["inputs"]["items"]["encoding"] == encoding


def test_ids_are_trimmed(tmp_path):
    inter = write_lines(tmp_path / "inter.csv", ["user,item,timestamp", "u1,A,1", " u1,B,2", "u1 , C ,3", "u2,A,1"])
    items = write_lines(tmp_path / "items.csv", ["item,title", " A ,Alpha", "B,Beta", "C  ,Gamma"])
    ds = PreparedDataset.load(prepare_dataset("csv", inter, items, output=tmp_path / "out"))
    assert source_sequences(ds, None) == [["A", "B", "C"], ["A"]]
    assert ds.item_texts[1:] == ["title is Alpha", "title is Beta", "title is Gamma"]


def test_a_long_log_is_held_in_a_few_bytes_per_row(tmp_path):
    # Issue 21: at 20M rows, lists of strings and Python floats held about 90 bytes a row (2 GB) after reading.
    rows = 50_000
    inter = write_lines(tmp_path / "inter.csv", ["user,item,timestamp,rating"] + [
        f"u{k % 500},i{k % 199},{1_600_000_000 + k}.5,{k % 5}" for k in range(rows)])
    tracemalloc.start()
    try:
        raw = get_format("csv").read_interactions(inter, "utf-8", False)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(raw) == rows and len(raw.user_names) == 500 and len(raw.item_names) == 199
    assert raw.users[501] == "u1" and raw.items[200] == "i1" and raw.timestamps[3] == 1_600_000_003.5
    assert held / rows < 48  # codes 4 + 4, time 8, rating 8, line 8 (lists of objects: over 100)


def test_keep_repeats_option_and_the_filters_record(tmp_path, capsys):
    from reaemb_trl.cli import main

    inter = write_lines(tmp_path / "inter.csv", ["user,item,timestamp", "u1,A,1", "u1,B,2", "u1,A,3", "u2,B,1"])
    reference = write_lines(tmp_path / "inter.txt", ["1 10", "1 20", "1 10", "2 20"])
    runs = {"csv": (inter, []), "csv-keep": (inter, ["--keep-repeats", "true"]), "reaemb": (reference, []),
            "reaemb-no-keep": (reference, ["--keep-repeats", "false"])}
    with pytest.warns(UserWarning, match="empty text"):
        for name, (path, flags) in runs.items():
            assert main(["prepare", name.split("-")[0], "--interactions", str(path), "--output",
                         str(tmp_path / name), "--no-show-progress", *flags]) == 0
    sequences = {name: [seq.tolist() for seq in PreparedDataset.load(tmp_path / name).sequences] for name in runs}
    assert sequences == {"csv": [[1, 2], [2]], "csv-keep": [[1, 2, 1], [2]], "reaemb": [[1, 2, 1], [2]],
                         "reaemb-no-keep": [[1, 2], [2]]}
    for name, kept in [("csv", False), ("csv-keep", True), ("reaemb", True), ("reaemb-no-keep", False)]:
        metadata = PreparedDataset.load(tmp_path / name).metadata
        assert metadata["parameters"]["keep_repeats"] is kept
        assert metadata["filters"] == {"min_rating": 0, "unknown_items": 0, "repeats": 0 if kept else 1,
                                       "min_user_interactions": 0, "min_item_interactions": 0}
    assert PreparedDataset.load(tmp_path / "csv-keep").cooccurrence.diagonal().sum() == 0


def test_markup_in_item_text_is_unescaped_and_stripped(tmp_path):
    inter = write_lines(tmp_path / "inter.csv", ["user,item", "u1,A", "u1,B"])
    items = write_lines(tmp_path / "items.csv", [
        "item,title,description",
        "A,&lt;script&gt;alert(1)&lt;/script&gt;Nice pen,<p>Blue <b>ink</b></p>",
        "B,Pad &amp; paper,size < 5 cm",
    ])
    ds = PreparedDataset.load(prepare_dataset("csv", inter, items, output=tmp_path / "out"))
    assert ds.item_texts[1:] == ["title is Nice pen; description is Blue ink",
                                 "title is Pad & paper; description is size < 5 cm"]
    assert json.loads((tmp_path / "out" / "items.jsonl").read_text().splitlines()[0])["fields"]["title"] == (
        "&lt;script&gt;alert(1)&lt;/script&gt;Nice pen")  # the raw attributes are kept as read


def test_seqjson_reader_on_bundled_sample(prepared_sample):
    ds = PreparedDataset.load(prepared_sample)
    assert (ds.num_users, ds.num_items, sum(map(len, ds.sequences))) == (4905, 2420, 53258)
    raw = json.loads(sample_dataset_files()[0].read_text())
    assert [seq.tolist() for seq in ds.sequences[:3]] == [[int(i) + 1 for i in raw[u]] for u in ("0", "1", "2")]
    assert ds.source_ids[:3] == ["0", "1", "2"]


def test_recbole_and_movielens_read_the_same_movielens_100k(shared_data, tmp_path):
    ml = shared_data / "movielens-100k"
    recbole = PreparedDataset.load(prepare_dataset("recbole", ml / "ml-100k.inter", ml / "ml-100k.item",
                                                   output=tmp_path / "recbole", show_progress=False))
    # There is no u.data in shared data; ml-100k.inter holds the same rows, written back in the GroupLens layout.
    rows = (ml / "ml-100k.inter").read_text().splitlines()[1:]
    (tmp_path / "u.data").write_text("".join(row + "\n" for row in rows))
    movielens = PreparedDataset.load(prepare_dataset("movielens", tmp_path / "u.data", ml / "u.item",
                                                     output=tmp_path / "movielens", show_progress=False))
    for ds in (recbole, movielens):
        assert (ds.num_users, ds.num_items, sum(map(len, ds.sequences))) == (943, 1682, 100000)
    assert all((a == b).all() for a, b in zip(recbole.sequences, movielens.sequences))
    assert recbole.item_texts[1] == "title is Toy Story; release year is 1995; class is Animation Children's Comedy"
    assert movielens.item_texts[1] == ("title is Toy Story (1995); genres is Animation, Children's, Comedy; "
                                       "release date is 01-Jan-1995")


REPO_ROOT = Path(__file__).resolve().parents[1]


def run_script(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_data_prep_script_applies_overridable_defaults(tmp_path):
    interactions, items, _ = write_yelp(tmp_path)
    script = str(REPO_ROOT / "data_prep" / "prepare_yelp.py")
    # The script's defaults (stars >= 4, 5-core users) filter every user out of this tiny file: exit 2, no folder.
    failed = run_script([script, "--interactions", str(interactions), "--items", str(items), "--output", "out"],
                        tmp_path)
    assert failed.returncode == 2 and "every user was filtered out" in failed.stderr
    assert not (tmp_path / "out").exists()
    done = run_script([script, "--interactions", str(interactions), "--items", str(items), "--output", "out",
                       "--min-user-interactions", "0", "--min-item-interactions", "0"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert PreparedDataset.load(tmp_path / "out").sequences[0].tolist() == [1, 2]  # u1: B, A (C had 3 stars)
