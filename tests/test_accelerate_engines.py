"""DeepSpeed and FSDP under `accelerate launch`: what runs on CPUs, and everything up to the device for the rest.

On CPUs (accelerate 1.15, DeepSpeed 0.19): DeepSpeed ZeRO-2 runs one process (DeepSpeed's CPU accelerator, gloo),
and both stages train, checkpoint and resume under it. Two CPU processes do not: accelerate records rank 0 of 1 on
every DeepSpeed process (it reads the ranks in its accelerator-device branch only), and it sets FSDP up on
accelerator devices only (on CPUs the run becomes DDP, which `test_lrcl_distributed.py` covers). So the two-rank
DeepSpeed and FSDP runs are left to `benchmarks/gpu_check.sh`'s machines; here every recipe is parsed and its plugin
built the way `accelerate launch` does, and the FSDP wrap policy is checked on the real model classes.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from reaemb_trl.embedder import LatentReasoningEmbedder
from reaemb_trl.embedder.loading import LoadingOptions
from reaemb_trl.lrcl.losses import build_loss
from reaemb_trl.lrcl.lrcl_trainer import ContrastiveEmbedder
from reaemb_trl.testing import save_tiny_decoder

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "recipes" / "accelerate").glob("*.yaml")) + [REPO / "accelerate_config.yaml"]
TEXTS = ["Stapler, black, 20 sheets", "Blue ballpoint pens, pack of 12", "A4 copy paper, 500 sheets"]


def _launch_env(config: Path) -> tuple[object, dict[str, str]]:
    """The parsed launch arguments and the environment `accelerate launch --config_file config` gives its workers."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args, defaults, _ = _validate_launch_command(
        launch_command_parser().parse_args(["--config_file", str(config), "train.py"]))
    if args.use_deepspeed:
        # `accelerate launch` sets this just before building the DeepSpeed environment.
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        return args, prepare_deepspeed_cmd_env(args)[1]
    return args, prepare_multi_gpu_env(args) if args.use_fsdp or args.multi_gpu else {}


def _plugin_for(config: Path, monkeypatch):
    from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin

    args, env = _launch_env(config)
    for key, value in env.items():
        if key.startswith(("ACCELERATE_", "FSDP_")):
            monkeypatch.setenv(key, value)
    if args.use_deepspeed:
        pytest.importorskip("deepspeed")
        return args, DeepSpeedPlugin()
    return args, FullyShardedDataParallelPlugin() if args.use_fsdp else None


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_accelerate_config_parses_into_its_plugin(config, monkeypatch):
    args, plugin = _plugin_for(config, monkeypatch)
    assert args.mixed_precision == "bf16"
    if args.use_deepspeed:
        assert plugin.zero_stage == 2
        # LRCL prepares no dataloader: the trainer fills this `auto` from its config before prepare().
        assert plugin.is_auto("train_micro_batch_size_per_gpu")
    elif args.use_fsdp:
        assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
        assert plugin.cpu_ram_efficient_loading is True


@pytest.mark.parametrize("architecture", ["qwen2", "llama"])
def test_fsdp_policy_wraps_each_decoder_layer(architecture, tmp_path, monkeypatch):
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    _, plugin = _plugin_for(REPO / "recipes" / "accelerate" / "fsdp.yaml", monkeypatch)
    embedder = LatentReasoningEmbedder.from_backbone(
        str(save_tiny_decoder(tmp_path / architecture, arch=architecture)),
        LoadingOptions(max_length=40, use_peft=True, lora_top_layers=1))
    model = ContrastiveEmbedder(embedder, build_loss("infonce"))  # what LRCL prepares; CRRL prepares the embedder
    layers = embedder.backbone_model.model.layers
    for prepared in (model, embedder):
        policy = fsdp2_prepare_auto_wrap_policy(plugin, prepared)
        wrapped = [module for module in prepared.modules() if policy(module)]
        assert wrapped == list(layers), f"{type(prepared).__name__}: the decoder layers are not wrapped one by one"
        assert list(prepared._no_split_modules) == [type(layers[0]).__name__]


# ------------------------------------------------------------------------------------- DeepSpeed on one CPU process
def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _cli(*runs: tuple[str, dict, Path | None]) -> None:
    """Each (stage, settings, accelerate config or None for a plain run) through the CLI, all at once: each process
    has one thread, so two of them share the 2 cores instead of waiting for each other's start-up."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    started = []
    for stage, settings, accelerate_config in runs:
        launcher = [] if accelerate_config is None else [
            "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config), "--num_processes", "1",
            "--mixed_precision", "no", "--main_process_port", _free_port()]
        command = [sys.executable, *launcher, "-m", "reaemb_trl.cli", stage,
                   *[part for key, value in settings.items() for part in (f"--{key}", str(value))]]
        log = tempfile.TemporaryFile("w+")  # not a pipe: a full pipe would block a process nobody reads yet
        started.append((subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         text=True), log))
    for process, log in started:
        code = process.wait(timeout=600)
        log.seek(0)
        assert code == 0, log.read()[-4000:]
        log.close()


@pytest.fixture(scope="module")
def deepspeed_one_cpu(tmp_path_factory) -> Path:
    """The ZeRO-2 recipe on one process; `mixed_precision no` because CPU bf16 would hide small differences."""
    pytest.importorskip("deepspeed")
    folder = tmp_path_factory.mktemp("deepspeed")
    text = (REPO / "recipes" / "accelerate" / "deepspeed_zero2.yaml").read_text()
    (folder / "zero2.yaml").write_text(text.replace("mixed_precision: bf16", "mixed_precision: 'no'"))
    return folder / "zero2.yaml"


def _embed(folder: Path) -> torch.Tensor:
    return LatentReasoningEmbedder.from_pretrained(folder).encode(TEXTS, show_progress=False)


def _losses(folder: Path) -> list[float]:
    return [entry["loss"] for entry in json.loads((folder / "trainer_state.json").read_text())["log_history"]]


@pytest.mark.multiprocess
@pytest.mark.slow
def test_lrcl_under_deepspeed_trains_resumes_and_saves_like_plain(deepspeed_one_cpu, prepared_sample, tmp_path):
    model = save_tiny_decoder(tmp_path / "tiny")
    settings = dict(model_name_or_path=model, dataset_dir=prepared_sample, max_length=40,
                    per_device_train_batch_size=4, max_steps=2, learning_rate=5e-3, lora_dropout=0.0, eval_steps=0,
                    eval_items=8, eval_batch_size=8, report_to="none", seed=5)
    _cli(("lrcl", {**settings, "output_dir": tmp_path / "zero2", "save_steps": 1}, deepspeed_one_cpu),
         ("lrcl", {**settings, "output_dir": tmp_path / "plain", "save_steps": 0}, None))
    _cli(("lrcl", {**settings, "output_dir": tmp_path / "resumed", "save_steps": 0,
                   "resume_from_checkpoint": tmp_path / "zero2" / "checkpoint-1"}, deepspeed_one_cpu))

    assert (tmp_path / "zero2" / "checkpoint-2" / "zero_to_fp32.py").is_file()  # DeepSpeed's own format
    assert _losses(tmp_path / "zero2") == pytest.approx(_losses(tmp_path / "plain"), rel=1e-5)
    zero2 = _embed(tmp_path / "zero2")
    assert torch.equal(zero2, _embed(tmp_path / "resumed"))
    torch.testing.assert_close(zero2, _embed(tmp_path / "plain"), rtol=1e-4, atol=1e-5)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_crrl_under_deepspeed_trains_and_saves_like_plain(deepspeed_one_cpu, prepared_sample, tmp_path):
    backbone = save_tiny_decoder(tmp_path / "tiny")
    LatentReasoningEmbedder.from_backbone(str(backbone),
                                          LoadingOptions(max_length=40)).save_pretrained(tmp_path / "lrcl")
    settings = dict(lrcl_model_path=tmp_path / "lrcl", dataset_dir=prepared_sample, num_generations=4,
                    per_device_train_batch_size=8, max_steps=2, learning_rate=5e-2, warmup_steps=0, eval_items=0,
                    save_strategy="steps", save_steps=2, logging_steps=1, report_to="none", seed=3,
                    rewards="cooc_softmax")  # smooth: a rank reward can tie every sample of a tiny model's group
    _cli(("crrl", {**settings, "output_dir": tmp_path / "zero2"}, deepspeed_one_cpu),
         ("crrl", {**settings, "output_dir": tmp_path / "plain"}, None))

    assert (tmp_path / "zero2" / "checkpoint-2" / "global_step2").is_dir()  # DeepSpeed's own format
    assert not (tmp_path / "plain" / "checkpoint-2" / "global_step2").exists()
    before = _embed(tmp_path / "lrcl")
    zero2, plain = _embed(tmp_path / "zero2"), _embed(tmp_path / "plain")
    assert not torch.allclose(zero2, before)  # the run trained
    torch.testing.assert_close(zero2, plain, rtol=1e-4, atol=1e-5)
