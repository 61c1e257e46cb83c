"""Inputs that used to be read into a wrong result without a word (issue 21): each is now an InputError naming the
file and the line or record, or a behaviour pinned here."""

import json
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from reaemb_trl.data import PreparedDataset, prepare_dataset
from reaemb_trl.data.readers import get_format
from reaemb_trl.errors import InputError
from reaemb_trl.recipe import load_recipe_yaml

pytestmark = pytest.mark.filterwarnings("ignore:no item file given")


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def read_interactions(fmt, path):
    return get_format(fmt).read_interactions(path, "utf-8", False)


def read_items(fmt, path):
    return get_format(fmt).read_items(path, "utf-8", False)


# ------------------------------------------------------------------------------ duplicate keys in a JSON-lines record
REVIEW_LINES = {
    "amazon2023": ['{"user_id": "u1", "parent_asin": "A", "rating": 5, "timestamp": 1}',
                   '{"user_id": "u1", "parent_asin": "B", "rating": 1, "timestamp": 2, "rating": 5}'],
    "amazon2018": ['{"reviewerID": "u1", "asin": "A", "overall": 5, "unixReviewTime": 1}',
                   '{"reviewerID": "u1", "asin": "B", "overall": 1, "unixReviewTime": 2, "overall": 5}'],
    "yelp": ['{"user_id": "u1", "business_id": "A", "stars": 5, "date": "2020-01-01 10:00:00"}',
             '{"user_id": "u1", "business_id": "B", "stars": 1, "date": "2020-01-02 10:00:00", "stars": 5}'],
}


@pytest.mark.parametrize("fmt", sorted(REVIEW_LINES))
def test_a_key_repeated_in_a_review_line_is_refused(fmt, tmp_path):
    path = write(tmp_path / "reviews.jsonl", REVIEW_LINES[fmt])
    key = {"amazon2023": "rating", "amazon2018": "overall", "yelp": "stars"}[fmt]
    with pytest.raises(InputError, match=rf"reviews\.jsonl, line 2: the key '{key}' appears more than once"):
        read_interactions(fmt, path)


def test_a_key_repeated_in_a_nested_object_of_a_meta_line_is_refused(tmp_path):
    meta = write(tmp_path / "meta.jsonl", ['{"parent_asin": "A", "title": "Pen"}',
                                           '{"parent_asin": "B", "details": {"Color": "red", "Color": "blue"}}'])
    with pytest.raises(InputError, match=r"meta\.jsonl, line 2: the key 'Color' appears more than once"):
        read_items("amazon2023", meta)


def test_a_key_repeated_in_a_python_literal_line_is_refused(tmp_path):
    # the 2014 Amazon dumps are python dict literals, which keep the last value just as json.loads does
    meta = write(tmp_path / "meta.json", ["{'asin': 'A', 'title': 'Pen'}",
                                          "{'asin': 'B', 'title': 'Ink', 'price': 3.5, 'title': 'Paper'}"])
    with pytest.raises(InputError, match=r"meta\.json, line 2: the key 'title' appears more than once"):
        read_items("amazon2018", meta)
    assert list(read_items("amazon2018", write(tmp_path / "ok.json", ["{'asin': 'A', 'title': 'Pen'}"])).fields) \
        == ["A"]


def test_a_key_repeated_in_a_reference_item_line_is_refused(tmp_path):
    items = write(tmp_path / "item_info.jsonline", ['{"item_id": 1, "input": "x\\n title is A", "item_id": 2}'])
    with pytest.raises(InputError, match=r"item_info\.jsonline, line 1: the key 'item_id' appears more than once"):
        read_items("reaemb", items)


# ------------------------------------------------------------------------------------- duplicate keys in YAML recipes
@pytest.mark.parametrize("text, line, key", [
    ("learning_rate: 1.0e-4\nmax_steps: 10\nlearning_rate: 5.0e-5\n", 3, "learning_rate"),
    ("lrcl:\n  max_steps: 10\n  seed: 1\n  max_steps: 20\ncrrl:\n  sigma: 0.1\n", 4, "max_steps"),
    ("a: 1\nyes: 2\ntrue: 3\n", 3, "True"),  # YAML 1.1: yes and true are one boolean key
])
def test_a_key_repeated_in_a_recipe_is_refused_with_its_line(tmp_path, text, line, key):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    with pytest.raises(InputError, match=rf"recipe\.yaml, line {line}: not valid YAML \(the key '?{key}'? appears more "
                                         "than once"):
        load_recipe_yaml(recipe)


def test_the_stage_recipe_parser_refuses_a_repeated_key_before_importing_trl(tmp_path):
    # PipelineConfig.from_yaml reads its recipe with the same load_recipe_yaml
    from reaemb_trl.recipe import parse_recipe

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("max_steps: 3\nseed: 1\nmax_steps: 30\n")
    steps = dataclass(type("Steps", (), {"__annotations__": {"max_steps": int, "seed": int}, "max_steps": 1,
                                         "seed": 0}))
    with pytest.raises(InputError, match=re.escape(f"{recipe}, line 3: not valid YAML (the key 'max_steps' appears")):
        parse_recipe(steps, ["--config", str(recipe)])


def test_a_recipe_without_repeats_and_with_a_merge_key_still_loads(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("base: &base {seed: 1, max_steps: 10}\nlrcl:\n  <<: *base\n  max_steps: 20\n")
    assert load_recipe_yaml(recipe) == {"base": {"seed": 1, "max_steps": 10}, "lrcl": {"seed": 1, "max_steps": 20}}


# ------------------------------------------------------------------------------------- seqjson item ids " 1" and "1"
def test_seqjson_item_ids_equal_once_trimmed_are_refused_naming_both(tmp_path):
    items = tmp_path / "items.json"
    items.write_text(json.dumps({"1": {"title": "Pen"}, "2": {"title": "Ink"}, " 1": {"title": "Paper"}}))
    with pytest.raises(InputError, match=r"items\.json, item ' 1': the item '1' is given twice \('1' and ' 1'"):
        read_items("seqjson", items)


# ------------------------------------------------------------------------------- a prepared folder changed afterwards
@pytest.fixture
def prepared_copy(prepared_sample, tmp_path):
    return shutil.copytree(prepared_sample, tmp_path / "copy")


def test_a_truncated_inter_txt_is_refused_by_its_hash(prepared_copy):
    inter = prepared_copy / "inter.txt"
    lines = inter.read_text().splitlines(keepends=True)
    last_user = lines[-1].split()[0]
    inter.write_text("".join(line for line in lines if line.split()[0] != last_user))  # still a valid file
    with pytest.raises(InputError, match=r"copy/inter\.txt: changed since `reaemb-trl prepare` wrote it \(its "
                                         r"sha256 differs from the one in dataset\.json\)"):
        PreparedDataset.load(prepared_copy)


def test_an_edited_item_text_is_refused_by_its_hash(prepared_copy):
    items = prepared_copy / "items.jsonl"
    items.write_text(items.read_text().replace("AT&T", "ACME", 1))
    with pytest.raises(InputError, match=r"copy/items\.jsonl: changed since `reaemb-trl prepare` wrote it"):
        PreparedDataset.load(prepared_copy)


def test_an_unchanged_copy_still_loads(prepared_copy, prepared_sample):
    assert PreparedDataset.load(prepared_copy).num_users == PreparedDataset.load(prepared_sample).num_users


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_cooccurrence_npz_is_an_input_error(prepared_copy, damage):
    npz = prepared_copy / "cooccurrence.npz"
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a zip file")
    ds = PreparedDataset.load(prepared_copy)
    with pytest.raises(InputError, match=r"copy/cooccurrence\.npz: changed since `reaemb-trl prepare` wrote it"):
        ds.cooccurrence


# ------------------------------------------------------------------------------------------ Yelp dates with offsets
def test_yelp_dates_keep_their_utc_offset_and_order_the_items(tmp_path):
    # A: 10:00 at +05:00 is 05:00 UTC, before B at 06:00 UTC; dropping the offset put A at 10:00, after B.
    # C: a date without an offset is read as UTC.
    lines = [json.dumps({"user_id": "u1", "business_id": item, "stars": 5, "date": date}) for item, date in
             [("B", "2020-01-01T06:00:00+00:00"), ("A", "2020-01-01T10:00:00+05:00"), ("C", "2020-01-01 05:30:00")]]
    path = write(tmp_path / "review.json", lines)
    utc = [datetime(2020, 1, 1, hour, minute, tzinfo=timezone.utc).timestamp() for hour, minute in
           [(6, 0), (5, 0), (5, 30)]]
    assert read_interactions("yelp", path).timestamps == utc
    ds = PreparedDataset.load(prepare_dataset("yelp", path, output=tmp_path / "out", show_progress=False))
    assert [ds.source_ids[item - 1] for item in ds.sequences[0]] == ["A", "C", "B"]


# --------------------------------------------------------------------------------------- control characters in ids
@pytest.mark.parametrize("fmt, name, lines, line", [
    ("csv", "inter.csv", ["user,item,timestamp", "u1,A,1", "u1,A\x00,2"], 3),
    ("csv", "inter.csv", ["user,item,timestamp", "u1\x00,A,1"], 2),
    ("recbole", "x.inter", ["user_id:token\titem_id:token", "u1\tA\x01"], 2),  # \x1f would be trimmed
    ("movielens", "u.data", ["1\t1\t5\t1", "1\t2\x00\t5\t2"], 2),
    ("amazon2023", "r.jsonl", ['{"user_id": "u1", "parent_asin": "A\\u0000", "rating": 5, "timestamp": 1}'], 1),
])
def test_a_control_character_inside_an_id_is_refused(tmp_path, fmt, name, lines, line):
    path = write(tmp_path / name, lines)
    with pytest.raises(InputError, match=rf"{re.escape(name)}, line {line}: (user|item) id .* holds a "
                                         "control character"):
        read_interactions(fmt, path)


def test_a_control_character_inside_an_item_file_id_is_refused(tmp_path):
    items = write(tmp_path / "items.csv", ["item,title", "A,Pen", "B\x00,Ink"])
    with pytest.raises(InputError, match=r"items\.csv, item 'B\\x00': item id 'B\\x00' holds a control "
                                         "character"):
        read_items("csv", items)


# ----------------------------------------------------------------------------------- numeric spellings of one id
@pytest.mark.parametrize("column, first, second", [("user", "1", "1.0"), ("item", "7", "07"), ("item", "10", "1e1")])
def test_two_spellings_of_one_number_in_a_file_are_refused(tmp_path, column, first, second):
    rows = {"user": ["1,A,1", "2,A,2", "1.0,B,3"], "item": [f"u1,{first},1", "u2,B,2", f"u2,{second},3"]}[column]
    path = write(tmp_path / "inter.csv", ["user,item,timestamp", *rows])
    with pytest.raises(InputError, match=rf"inter\.csv, line 4: {column} id '{second}' spells the same number as "
                                         rf"{column} id '{first}'"):
        read_interactions("csv", path)


def test_ids_that_are_different_numbers_or_no_numbers_stay_apart(tmp_path):
    # 25 digits: a float would round both to one number; text ids compare exactly
    big, bigger = "1234567890123456789012345", "1234567890123456789012346"
    path = write(tmp_path / "inter.csv", ["user,item", f"{big},A", f"{bigger},a", "u1,1", "U1,1.5"])
    raw = read_interactions("csv", path)
    assert raw.users == [big, bigger, "u1", "U1"] and raw.items == ["A", "a", "1", "1.5"]


def test_two_spellings_of_one_number_in_an_item_file_are_refused(tmp_path):
    items = tmp_path / "items.json"
    items.write_text(json.dumps({"1": {"title": "Pen"}, "1.0": {"title": "Ink"}}))
    with pytest.raises(InputError, match=r"items\.json, item '1\.0': item id '1\.0' spells the same number as "
                                         r"item id '1'"):
        read_items("seqjson", items)
