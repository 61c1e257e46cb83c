import os

# Tests never reach a hub; set before transformers is imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

from pathlib import Path

import pytest

from reaemb_trl.embedder.loading import LoadingOptions

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` beside the checkout (MovieLens lives only there: its terms forbid bundling it)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: the shared datasets must sit beside the checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from reaemb_trl.testing import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from reaemb_trl.embedder.backbone import bundled_minilm_path

    return bundled_minilm_path()


@pytest.fixture(scope="session")
def prepared_sample(tmp_path_factory) -> Path:
    """The bundled Office 2014 sample, prepared once per test session (read-only for tests)."""
    from reaemb_trl.data import prepare_dataset, sample_dataset_files

    inter, items = sample_dataset_files()
    return prepare_dataset("seqjson", interactions=inter, items=items,
                           output=tmp_path_factory.mktemp("data") / "office")


@pytest.fixture(scope="session")
def minilm_lrcl(prepared_sample, tmp_path_factory):
    """`reaemb_trl.testing.short_minilm_lrcl_config` trained once per session: `(trainer, metrics)`; its output
    folder `trainer.output_dir` is the start of the CRRL tests."""
    from reaemb_trl.lrcl import LRCLTrainer
    from reaemb_trl.testing import short_minilm_lrcl_config

    trainer = LRCLTrainer(short_minilm_lrcl_config(prepared_sample, tmp_path_factory.mktemp("lrcl") / "lrcl-minilm"))
    return trainer, trainer.train()


@pytest.fixture(scope="session")
def smollm2_backbone():
    """The bundled SmolLM2-135M-Instruct (fp32, eval mode) and its tokenizer, loaded once per session. `from_backbone`
    adopts a model object and adds LoRA and thought tokens to it in place: build embedders on `copy.deepcopy` of it."""
    from reaemb_trl.embedder.backbone import BUNDLED_SMOLLM2, load_backbone, load_tokenizer

    return load_backbone(BUNDLED_SMOLLM2), load_tokenizer(BUNDLED_SMOLLM2)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """The first 6 users of the bundled Office sample and their few dozen items, prepared."""
    return prepared_sample_subset(tmp_path_factory.mktemp("small"), 6)


@pytest.fixture(scope="session")
def tiny_embedder_folder(tmp_path_factory):
    """A saved embedder on a tiny random Llama decoder with LoRA (what the export tests read)."""
    from reaemb_trl.embedder import LatentReasoningEmbedder
    from reaemb_trl.testing import save_tiny_decoder

    root = tmp_path_factory.mktemp("tiny_embedder")
    backbone = save_tiny_decoder(root / "backbone", arch="llama")
    LatentReasoningEmbedder.from_backbone(backbone, LoadingOptions(use_peft=True,
                                                                   max_length=96)).save_pretrained(root / "embedder")
    return root / "embedder"


def prepared_sample_subset(folder, num_users: int):
    """The first `num_users` users of the bundled sample and the items they touch, prepared in `folder`."""
    import json
    from pathlib import Path

    from reaemb_trl.data import prepare_dataset, sample_dataset_files

    inter_path, item_path = sample_dataset_files()
    users = dict(list(json.loads(Path(inter_path).read_text()).items())[:num_users])
    used = {str(item) for sequence in users.values() for item in sequence}
    items = {key: value for key, value in json.loads(Path(item_path).read_text()).items() if key in used}
    folder = Path(folder)
    (folder / "inter.json").write_text(json.dumps(users))
    (folder / "item.json").write_text(json.dumps(items))
    return prepare_dataset("seqjson", interactions=folder / "inter.json", items=folder / "item.json",
                           output=folder / "prepared", show_progress=False)
