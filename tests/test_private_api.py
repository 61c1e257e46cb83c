"""The private TRL / transformers API that CRRL and the checkpoint mixin lean on is still there, with the same shape.

A TRL or transformers release may rename or re-sign any of it without notice; this test names what moved, so an
upgrade fails here and not deep inside a training run.
"""

import inspect

import pytest
import transformers.trainer
from trl import GRPOTrainer

from reaemb_trl.crrl.crrl_trainer import EmbeddingGRPOTrainer
from reaemb_trl.training_state import SafeCheckpointMixin

# Methods of the parents that EmbeddingGRPOTrainer or SafeCheckpointMixin override (and mostly call via super()).
OVERRIDDEN = {
    EmbeddingGRPOTrainer: ["_generate_and_score_completions", "_compute_loss", "_save_rng_state", "_load_rng_state",
                           "_load_from_checkpoint"],
    SafeCheckpointMixin: ["_save", "_save_optimizer_and_scheduler", "_load_optimizer_and_scheduler", "_save_scaler",
                          "_load_scaler", "_save_rng_state", "_load_rng_state"],
}
# Attributes GRPOTrainer sets in __init__ (or the Trainer loop updates) that CRRL reads or writes.
INSTANCE_ATTRIBUTES = ["_metrics", "_step", "_buffered_inputs", "current_gradient_accumulation_steps",
                       "num_generations", "num_generations_eval", "num_iterations", "reward_funcs", "reward_weights",
                       "loss_type", "epsilon_low", "epsilon_high"]
# Class attributes CRRL overrides: TRL reads them for the model card.
CLASS_ATTRIBUTES = ["_tag_names", "_name"]
TRAINER_CONSTANTS = ["TRAINING_ARGS_NAME", "OPTIMIZER_NAME", "OPTIMIZER_NAME_BIN"]


def _parameter_names(function) -> list[str]:
    return list(inspect.signature(function).parameters)


@pytest.mark.parametrize("owner, name", [(owner, name) for owner, names in OVERRIDDEN.items() for name in names],
                         ids=lambda value: getattr(value, "__name__", value))
def test_overridden_method_still_exists_with_the_same_parameters(owner, name):
    parent = getattr(GRPOTrainer, name, None)
    assert parent is not None, (f"{owner.__name__}.{name} overrides GRPOTrainer.{name}, which this TRL / transformers "
                                "release no longer has: the override is dead code and its behaviour is lost")
    ours, theirs = _parameter_names(owner.__dict__[name]), _parameter_names(parent)
    assert ours == theirs, (f"{owner.__name__}.{name}{ours} no longer matches {parent.__qualname__}{theirs}: "
                            "the parent calls it with other arguments now")


def test_own_helpers_do_not_shadow_a_parent_method():
    overridden = {name for names in OVERRIDDEN.values() for name in names}
    for owner in OVERRIDDEN:
        own = {name for name, value in vars(owner).items()
               if callable(value) and name.startswith("_") and not name.startswith("__")}
        shadowing = sorted(name for name in own - overridden if hasattr(GRPOTrainer, name))
        assert not shadowing, (f"{owner.__name__} defines {shadowing}, which GRPOTrainer now has too: the parent "
                               "would call ours; rename ours or list it in OVERRIDDEN after checking the contract")


@pytest.mark.parametrize("name", INSTANCE_ATTRIBUTES)
def test_grpo_still_sets_the_attributes_crrl_uses(name):
    sources = "".join(inspect.getsource(cls) for cls in GRPOTrainer.__mro__
                      if cls.__module__.startswith(("trl.", "transformers.")))
    assert f"self.{name} =" in sources or f"self.{name}:" in sources, (
        f"GRPOTrainer (or its transformers Trainer) no longer sets self.{name}, which EmbeddingGRPOTrainer reads")


@pytest.mark.parametrize("name", CLASS_ATTRIBUTES)
def test_grpo_still_has_the_class_attributes_crrl_overrides(name):
    assert any(name in vars(cls) for cls in GRPOTrainer.__mro__), (
        f"no class of GRPOTrainer's hierarchy defines {name} any more: EmbeddingGRPOTrainer's value is ignored")


@pytest.mark.parametrize("name", TRAINER_CONSTANTS)
def test_trainer_file_names_still_exist(name):
    assert isinstance(getattr(transformers.trainer, name, None), str), (
        f"transformers.trainer.{name} is gone: SafeCheckpointMixin uses it to find the Trainer's own checkpoint files")
