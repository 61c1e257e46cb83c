"""One argument vocabulary, TrainingArguments': LRCL takes its keys with its meanings, both stages share the defaults
that should be shared, `crrl --help` leads with ReaEmb's keys, and the default warm-up suits a short run."""

import pytest

from reaemb_trl.cli import main as cli_main
from reaemb_trl.crrl import CooccurrenceRewardModel, CRRLConfig, EmbeddingGRPOTrainer, item_dataset, load_policy
from reaemb_trl.crrl.crrl_config import UNUSED_GRPO_KEYS
from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.errors import InputError
from reaemb_trl.lrcl import LRCLConfig
from reaemb_trl.recipe import parse_recipe
from reaemb_trl.testing import save_tiny_decoder


def lrcl(*argv: str) -> LRCLConfig:
    return parse_recipe(LRCLConfig, list(argv), prog="reaemb-trl lrcl")


def test_lrcl_parses_training_arguments_keys_as_the_cli_does(tmp_path):
    assert lrcl("--bf16").bf16 is True and lrcl("--bf16").resolved_mixed_precision() == "bf16"
    assert lrcl("--fp16", "--max_steps", "3").fp16 is True
    assert lrcl().bf16 is None and lrcl().fp16 is None  # unset: chosen from the hardware
    assert lrcl("--bf16", "false").resolved_mixed_precision() == "no"
    recipe = tmp_path / "lrcl.yaml"
    recipe.write_text("bf16: true\nmax_steps: -1\nnum_train_epochs: 2\nwarmup_steps: 0.25\n"
                      "eval_strategy: 'no'\nsave_strategy: 'no'\n")
    config = lrcl("--config", str(recipe), "--per_device_train_batch_size", "10")
    assert config.bf16 is True and config.max_steps == -1 and config.num_train_epochs == 2
    # 2 passes over 1,000 items at 10 x 2 processes x 2 accumulation steps = 40 items a step: 50 steps
    assert config.total_steps(num_train_items=1000, num_processes=2) == 50
    assert config.get_warmup_steps(50) == 13  # a share of the run, rounded up as TrainingArguments rounds it
    assert config.eval_steps == 0 and config.save_steps == 0  # `no`: never during training
    assert lrcl("--max_steps", "30").total_steps(num_train_items=1000, num_processes=2) == 30
    assert lrcl("--warmup_steps", "7").get_warmup_steps(30) == 7  # a whole number >= 1 stays a step count
    steps = lrcl("--eval_strategy", "steps", "--eval_steps", "50", "--save_strategy", "steps", "--save_steps", "100")
    assert (steps.eval_steps, steps.save_steps) == (50, 100)


@pytest.mark.parametrize("argv, message", [
    (["--eval_strategy", "epoch"], "eval_strategy='epoch' is not one of"),
    (["--save_strategy", "best"], "save_strategy='best' is not one of"),
    (["--max_steps", "-1"], "num_train_epochs, which is not set"),
    (["--num_train_epochs", "2"], "num_train_epochs=2.0 is ignored while max_steps=2000"),
    (["--max_steps", "0"], "max_steps must be >= 1"),
    (["--warmup_steps", "-1"], "warmup_steps must be >= 0"),
])
def test_lrcl_refuses_what_it_cannot_honour(argv, message):
    with pytest.raises(InputError, match=message):
        lrcl(*argv)


def test_both_stages_share_defaults_and_say_what_a_batch_counts(tmp_path):
    crrl = CRRLConfig(output_dir=str(tmp_path), use_cpu=True)
    assert LRCLConfig().report_to == crrl.report_to == ["tensorboard"]
    assert LRCLConfig().warmup_steps == crrl.warmup_steps == 0.1
    helps = {cls.__name__: {f.name: f.metadata["help"] for f in cls.__dataclass_fields__.values()}
             for cls in (LRCLConfig, CRRLConfig)}
    assert "Items per process per micro-step" in helps["LRCLConfig"]["per_device_train_batch_size"]
    assert "items x num_generations" in helps["CRRLConfig"]["per_device_train_batch_size"]
    assert "latest` / `true`" in helps["CRRLConfig"]["resume_from_checkpoint"]


def test_crrl_help_leads_with_reaemb_keys_and_offers_no_refused_key(capsys):
    assert cli_main(["crrl", "--help"]) == 0
    text = capsys.readouterr().out
    own_heading, trl_heading = text.index("ReaEmb options"), text.index("TRL options")
    assert own_heading < text.index("--sigma") < text.index("--positive_rule") < trl_heading
    assert trl_heading < text.index("--learning_rate") and trl_heading < text.index("--num_generations")
    resume = text[text.index("--resume_from_checkpoint RESUME"):]
    assert "`latest` / `true`" in resume[:300]
    offered, refused_line = text[:text.index("Refused")], text[text.index("Refused"):]
    for names in UNUSED_GRPO_KEYS.values():
        for name in names:
            assert f"--{name} " not in offered and f"--{name}\n" not in offered, name
    assert "use_vllm" in refused_line and "top_p" in refused_line
    # what is offered parses
    assert parse_recipe(CRRLConfig, ["--output_dir", "o", "--use_cpu", "true", "--sigma", "0.2"]).sigma == 0.2
    assert cli_main(["cooc-sft", "-h"]) == 0
    assert "CRRL's supervised control" in capsys.readouterr().out


def test_a_25_step_crrl_run_reaches_the_peak_learning_rate(small_dataset, tmp_path):
    """The default warm-up is a share of the run: a 25-step run warms up over 3 steps and then follows its schedule
    from the peak (the old default, 200 steps, kept it below 1/8 of the peak). The schedule is the trainer's own."""
    backbone = save_tiny_decoder(tmp_path / "backbone", hidden_size=32, num_layers=1)
    LatentReasoningEmbedder.from_backbone(str(backbone),
                                          LoadingOptions(max_length=32)).save_pretrained(tmp_path / "lrcl")
    args = CRRLConfig(output_dir=str(tmp_path / "out"), lrcl_model_path=str(tmp_path / "lrcl"), max_steps=25,
                      num_generations=2, per_device_train_batch_size=2, learning_rate=1e-3, report_to="none",
                      use_cpu=True)
    reward_model = CooccurrenceRewardModel(small_dataset, num_candidates=4)
    train_items, _ = reward_model.split_items(0)
    trainer = EmbeddingGRPOTrainer(load_policy(args), args, reward_model,
                                   item_dataset(train_items, reward_model.item_texts))
    trainer.create_optimizer_and_scheduler(num_training_steps=args.max_steps)
    rates = []
    for _ in range(args.max_steps):  # the learning rate each optimizer step uses
        rates.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    assert rates[:4] == pytest.approx([0, 1e-3 / 3, 2e-3 / 3, 1e-3])
    assert max(rates) == pytest.approx(1e-3) and rates[-1] < rates[4]  # then the cosine decay


def _lrcl_trainer(small_dataset, tmp_path, **settings):
    from reaemb_trl.lrcl import LRCLTrainer

    backbone = save_tiny_decoder(tmp_path / "backbone", hidden_size=32, num_layers=1)
    return LRCLTrainer(LRCLConfig(model_name_or_path=str(backbone), dataset_dir=str(small_dataset),
                                  output_dir=str(tmp_path / "lrcl"), max_length=32, per_device_train_batch_size=4,
                                  gradient_accumulation_steps=1, eval_items=4, report_to="none", seed=0, **settings))


def test_a_25_step_lrcl_run_reaches_the_peak_learning_rate(small_dataset, tmp_path):
    trainer = _lrcl_trainer(small_dataset, tmp_path, max_steps=25, learning_rate=1e-3)
    rates = []
    for _ in range(25):  # the learning rate each optimizer step uses, from the trainer's own schedule
        rates.append(trainer.scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.scheduler.step()
    assert rates[:4] == pytest.approx([0, 1e-3 / 3, 2e-3 / 3, 1e-3]) and max(rates) == pytest.approx(1e-3)


def test_lrcl_trains_num_train_epochs_when_max_steps_is_minus_one(small_dataset, tmp_path):
    trainer = _lrcl_trainer(small_dataset, tmp_path, max_steps=-1, num_train_epochs=1.5, eval_steps=0,
                            save_steps=0)
    expected = -(-3 * len(trainer.train_item_ids) // (2 * 4))  # ceil(1.5 passes x items / 4 items a step)
    assert trainer.max_steps == expected
    trainer.train()
    assert trainer.global_step == expected
