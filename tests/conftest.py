import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A private datasets cache per test session: the user's cache never leaks stale rows into tests.
import tempfile  # noqa: E402

os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="samrs-test-datasets-")

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = Path(os.environ.get("SAMRS_SHARED", REPO.parent / "shared")) / "fixtures" / "real"


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    """The real dataset samples in ../shared/fixtures/real (skips cleanly when absent)."""
    if not SHARED_REAL.is_dir():
        pytest.skip(f"real fixtures not found at {SHARED_REAL}")
    return SHARED_REAL


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def torch_one_thread():
    """One torch intra-op thread for a module: two threads on the shared 2-core VM under load run
    training steps ~10x slower than one (spinning OpenMP workers)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def encode_tiny_sam():
    """encode(attn) -> tiny-random SAM's (with random qkv biases) image embedding of one fixed 1024²
    input, its vision layers rebuilt for ``attn`` (a name or SamAttentionOptions; one model per test
    module)."""
    import torch

    from samrs_hf.sam.attention import install_attention
    from samrs_hf.sam.loading import load_sam
    from samrs_hf.sam.options import SamAttentionOptions

    model = load_sam("tiny-random", attn_implementation="sdpa")[0]
    with torch.no_grad():  # tiny-random's biases are zero: give the padded windows' keys/values something
        for layer in model.vision_encoder.layers:
            layer.attn.qkv.bias.normal_(0, 0.5, generator=torch.Generator().manual_seed(2))
    pixels = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))

    def encode(attn: str):
        install_attention(model, attn if isinstance(attn, SamAttentionOptions) else SamAttentionOptions(attn))
        with torch.no_grad():
            return model.vision_encoder(pixels).last_hidden_state

    encode.model, encode.pixels = model, pixels
    return encode


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    """One `samrs demo` run (tiny-random, 3 overlays) per test session, shared by the demo and notebook tests."""
    import contextlib
    import io

    from samrs_hf.cli import main
    from samrs_hf.demo import TINY

    out = tmp_path_factory.getbasetemp() / "samrs-demo"
    if not (out / "hub" / "README.md").is_file():
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main(["demo", "--out", str(out), "--model", TINY, "--n", "3"]) == 0
        (out / "printed.txt").write_text(printed.getvalue())
    return out


@pytest.fixture
def free_port() -> int:
    """A TCP port nobody listens on now, for an `accelerate launch` main process."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
