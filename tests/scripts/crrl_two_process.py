"""Worker of the two-process CRRL test: trains like `reaemb-trl crrl`, then each rank writes OUTPUT_DIR/rank{R}.json
with a digest of its trainable parameters (before and after) and the items it sampled, for the test to compare."""

import hashlib
import json
import sys
from pathlib import Path

from reaemb_trl.crrl import CRRLConfig, build_trainer
from reaemb_trl.recipe import parse_recipe


def trainable_digest(model) -> str:
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()


def main(argv):
    args = parse_recipe(CRRLConfig, argv)
    trainer = build_trainer(args)
    sampled = []
    generate = trainer._generate_and_score_completions

    def recording(inputs):  # the items this rank drew, one per group
        sampled.extend(int(row["item_id"]) for row in inputs[:: args.num_generations])
        return generate(inputs)

    trainer._generate_and_score_completions = recording
    model = trainer.accelerator.unwrap_model(trainer.model)
    before = trainable_digest(model)
    trainer.train()
    rank = trainer.accelerator.process_index
    record = {"rank": rank, "num_processes": trainer.accelerator.num_processes, "before": before,
              "sha256": trainable_digest(model), "items": sampled,
              "rewards": [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]}
    (Path(args.output_dir) / f"rank{rank}.json").write_text(json.dumps(record))
    trainer.accelerator.end_training()  # as `crrl.run` does: no process group left to interpreter exit


if __name__ == "__main__":
    main(sys.argv[1:])
