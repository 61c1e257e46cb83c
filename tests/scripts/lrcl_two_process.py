"""Worker of the two-process LRCL test: trains like `reaemb-trl lrcl`, then each rank writes a digest of its
trainable parameters to OUTPUT_DIR/rank{R}.json so the test can check that the ranks agree."""

import hashlib
import json
import sys
from pathlib import Path

from reaemb_trl.lrcl import LRCLConfig, LRCLTrainer
from reaemb_trl.recipe import parse_recipe


def main(argv):
    trainer = LRCLTrainer(parse_recipe(LRCLConfig, argv))
    trainer.train()
    model = trainer.accelerator.unwrap_model(trainer.model)
    digest, total = hashlib.sha256(), 0.0
    for name, param in sorted(model.named_parameters()):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().cpu().float().numpy().tobytes())
            total += float(param.detach().double().sum())
    rank = trainer.accelerator.process_index
    record = {"rank": rank, "num_processes": trainer.accelerator.num_processes, "sha256": digest.hexdigest(),
              "sum": total, "losses": [entry["loss"] for entry in trainer.history["train"]]}
    (Path(trainer.config.output_dir) / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1:])
