"""Issue 23 §3: each recommender has its own settings class, registered with its model; a key that a recommender does
not have is refused by name; `pop` is an ordinary entry; outside recommenders come in by `register_recommender` or
an entry point. (No training here: tests/test_extensions.py runs an outside recommender end to end.)"""

import json
import re
import textwrap
from dataclasses import dataclass, fields

import numpy as np
import pytest

from reaemb_trl.cli import main as cli_main
from reaemb_trl.downstream import (
    RECOMMENDERS,
    DownstreamConfig,
    available_recommenders,
    build_model,
    get_recommender,
    register_recommender,
)
from reaemb_trl.downstream.models import GRU4Rec, Popularity, SASRec
from reaemb_trl.errors import InputError
from reaemb_trl.recipe import parse_recipe


@pytest.fixture
def restore_registry():
    """Registrations a test makes are undone: the registry is module state other test modules read."""
    before = dict(RECOMMENDERS)
    yield
    RECOMMENDERS.clear()
    RECOMMENDERS.update(before)


def test_each_recommender_takes_only_its_own_settings():
    config = DownstreamConfig(recommender="gru4rec", recommender_kwargs={
        "gru4rec": {"num_layers": 2}, "sasrec": {"num_heads": 4}, "bert4rec": {"mask_prob": 0.5}})
    assert config.recommender_config().num_layers == 2
    assert config.recommender_config("sasrec").num_heads == 4 and config.recommender_config("sasrec").num_layers == 2
    assert config.recommender_config("bert4rec").mask_prob == 0.5
    # GRU4Rec once ignored num_layers silently; now its own setting reaches the model
    model = build_model(config, 20, np.zeros(21))
    assert isinstance(model, GRU4Rec) and model.gru.num_layers == 2
    assert config.to_dict()["recommender_config"] == {"num_layers": 2}
    # a key the recommender does not have, a recommender nobody registered, a value out of its range
    with pytest.raises(InputError, match=r"'gru4rec' has no option 'num_heads' \(its options: num_layers\)"):
        DownstreamConfig(recommender_kwargs={"gru4rec": {"num_heads": 4}})
    with pytest.raises(InputError, match=r"recommender 'pop' has no option 'num_layers' \(its options: none\)"):
        DownstreamConfig(recommender_kwargs={"pop": {"num_layers": 1}})
    with pytest.raises(InputError, match="recommender_kwargs: recommender 'lstm' is unknown "
                                         r"\(choose from sasrec, gru4rec, bert4rec, pop"):
        DownstreamConfig(recommender_kwargs={"lstm": {}})
    with pytest.raises(InputError, match=r"num_heads must be >= 1, got 0 \(recommender_kwargs of 'sasrec'\)"):
        DownstreamConfig(recommender_kwargs={"sasrec": {"num_heads": 0}})
    # the shared config holds no recommender's own key
    shared = {f.name for f in fields(DownstreamConfig)}
    for entry in RECOMMENDERS.values():
        assert not shared & set(entry.options()), entry.name


def test_own_settings_from_a_recipe_and_from_the_command_line(tmp_path, capsys):
    recipe = tmp_path / "evaluate.yaml"
    recipe.write_text("recommender: bert4rec\nepochs: 3\nrecommender_kwargs: {bert4rec: {mask_prob: 0.4}}\n")
    from_recipe = parse_recipe(DownstreamConfig, ["--config", str(recipe)])
    from_flags = parse_recipe(DownstreamConfig, ["--recommender", "bert4rec", "--epochs", "3",
                                                 "--recommender_kwargs", '{"bert4rec": {"mask_prob": 0.4}}'])
    for config in (from_recipe, from_flags):
        assert config.epochs == 3 and config.recommender_config().mask_prob == 0.4
    # the flat flag of before gets the new spelling, not argparse's "unrecognized arguments"
    data = str(tmp_path / "unused")
    assert cli_main(["evaluate", "--data", data, "--output", str(tmp_path / "m.json"), "--num_layers", "3"]) == 2
    assert ("--num_layers is a setting of sasrec, gru4rec, bert4rec, given per recommender: "
            """--recommender_kwargs '{"sasrec": {"num_layers": 2}}'""") in capsys.readouterr().err
    assert cli_main(["compare", "--data", data, "--output", str(tmp_path / "c"), "--mask_prob=0.3"]) == 2
    assert "--mask_prob is a setting of bert4rec" in capsys.readouterr().err


def test_pop_is_an_ordinary_entry_whose_model_says_what_is_special():
    pop = get_recommender("pop")
    assert (pop.config_cls, pop.model_cls) == (Popularity.config_class, Popularity)
    assert (pop.uses_table, pop.deterministic, pop.run_name) == (False, True, "popularity")
    sasrec = get_recommender("sasrec")
    assert (sasrec.uses_table, sasrec.deterministic, sasrec.run_name) == (True, False, "sasrec")
    with pytest.raises(InputError, match="the pop recommender uses no item table"):
        build_model(DownstreamConfig(recommender="pop"), 5, np.zeros(6), np.zeros((6, 4), dtype=np.float32))


def test_register_refuses_a_taken_name_and_a_settings_class_that_is_no_dataclass(restore_registry):
    @dataclass
    class Settings:
        width: int = 3

    with pytest.raises(InputError, match="'sasrec' is already registered"):
        register_recommender("sasrec", Settings, GRU4Rec)
    register_recommender("sasrec", SASRec.config_class, SASRec)  # the same entry again is no conflict
    with pytest.raises(InputError, match="must be a dataclass"):
        register_recommender("plain", dict, SASRec)
    with pytest.raises(InputError, match="no from_config"):
        register_recommender("plain", Settings, object)


def test_a_recommender_published_as_an_entry_point(tmp_path, monkeypatch, restore_registry):
    (tmp_path / "user_recs_pkg.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass

        from reaemb_trl.downstream.models import Popularity, RecommenderConfig


        @dataclass
        class InversePopularityConfig(RecommenderConfig):
            number_rules = {"power": "> 0"}
            power: float = 1.0


        class InversePopularity(Popularity):
            config_class = InversePopularityConfig
            run_name = "inverse-popularity"

            @classmethod
            def from_config(cls, config, settings, item_table, num_items, train_popularity):
                return cls(-(train_popularity ** settings.power))
    """))
    dist = tmp_path / "user_recs_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: user-recs-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[reaemb_trl.recommenders]\ninv_pop = user_recs_pkg:InversePopularity\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    assert "inv_pop" in available_recommenders() and "inv_pop" not in RECOMMENDERS  # listed, loaded on first use
    config = DownstreamConfig(recommender="inv_pop", recommender_kwargs={"inv_pop": {"power": 2.0}})
    entry = get_recommender("inv_pop")
    assert entry.model_cls.__name__ == "InversePopularity" and entry.run_name == "inverse-popularity"
    model = build_model(config, 3, np.array([0, 1, 2, 3]))
    assert model.counts.tolist() == [0.0, -1.0, -4.0, -9.0]
    with pytest.raises(InputError, match=r"power must be > 0, got 0 \(recommender_kwargs of 'inv_pop'\)"):
        DownstreamConfig(recommender="inv_pop", recommender_kwargs={"inv_pop": {"power": 0}})
    with pytest.raises(InputError, match=r"recommender 'inv_pops' is unknown \(choose from .*inv_pop"):
        DownstreamConfig(recommender="inv_pops")
    assert json.loads(json.dumps(config.to_dict()))["recommender_config"] == {"power": 2.0}


def test_a_pipeline_recipe_with_a_once_shared_setting_gets_the_per_recommender_spelling():
    from reaemb_trl.pipeline.pipeline_config import CompareSection

    hint = ('compare.options: num_layers is a setting of sasrec, gru4rec, bert4rec, given per recommender: '
            'recommender_kwargs: {"sasrec": {"num_layers": 2}}')
    with pytest.raises(InputError, match=re.escape(hint)):
        CompareSection(options={"num_layers": 3})
    with pytest.raises(InputError, match=r"compare.options: unknown key\(s\) \['epochz'\]"):
        CompareSection(options={"epochz": 3})
