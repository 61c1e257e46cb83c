"""Nothing fetched from the Hub unasked: importing the package (bitsandbytes, imported by peft, asks for a kernel
otherwise) and loading a backbone (transformers' default Hub layer kernels).

The import checks run a fresh interpreter with the Hub online, pointed at a local HTTP server that records every
request.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading

import pytest

GUARDED_IMPORT = "import reaemb_trl.embedder, peft, bitsandbytes, transformers"
BARE_IMPORT = "import peft, bitsandbytes"


@pytest.fixture
def hub():
    """A local stand-in for the Hub's address: answers 404 to everything, keeps the requested paths."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            self.send_response(404)
            self.end_headers()

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", requests
    server.shutdown()
    server.server_close()


def import_online(code: str, endpoint: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_ENDPOINT"] = endpoint
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def cpu_backend_fetches_a_kernel() -> bool:
    from bitsandbytes.functional import has_avx512bf16

    return has_avx512bf16()


def test_importing_the_package_asks_the_hub_for_nothing(hub):
    endpoint, requests = hub
    result = import_online(GUARDED_IMPORT + "; print(bitsandbytes.__name__)", endpoint)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "bitsandbytes"
    assert requests == []
    assert "gemm_4bit_forward" not in result.stderr and "publisher trust" not in result.stderr


@pytest.mark.skipif(not cpu_backend_fetches_a_kernel(), reason="bitsandbytes fetches its CPU kernel only on "
                                                                  "processors with AVX512-BF16")
def test_without_the_guard_bitsandbytes_asks_the_hub(hub):
    """What the guard prevents, so that the test above can fail: peft alone makes bitsandbytes call the Hub."""
    endpoint, requests = hub
    result = import_online(BARE_IMPORT, endpoint)
    assert result.returncode == 0, result.stderr
    assert any("kernels-community" in path for path in requests), requests


def test_backbones_load_without_the_hubs_layer_kernels(tmp_path):
    """transformers turns `use_kernels` on by default where `kernels` is installed, and then replaces layers with
    kernels downloaded from the Hub at the first train() / eval() on a GPU (offline: a crash, seen on an H200)."""
    from reaemb_trl.embedder import LatentReasoningEmbedder
    from reaemb_trl.testing import save_tiny_decoder

    backbone = save_tiny_decoder(tmp_path / "backbone", arch="llama", hidden_size=32, num_layers=1)
    embedder = LatentReasoningEmbedder.from_backbone(str(backbone))
    model = embedder.backbone_model
    assert model.use_kernels is False
    model.train()
    assert getattr(model, "_kernels_mode", None) is None  # no kernelization was attempted
