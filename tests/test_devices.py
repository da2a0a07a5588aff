"""The one device check every command uses: a typo or a device this machine lacks is one line naming the
option; the spelling alone is checked where the device is used later, in other processes."""

import pytest
import torch

from samrs_hf.common.devices import check_device, default_device, parse_device


def test_spelling_is_checked_apart_from_the_machine():
    assert parse_device("cuda:1", "--device") == torch.device("cuda", 1)  # parses on any machine
    with pytest.raises(ValueError, match=r"^--device 'gpu0' is not a torch device \("):
        parse_device("gpu0", "--device")
    assert check_device("cpu") == torch.device("cpu")


def test_a_missing_gpu_is_named_with_the_option(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^--device 'cuda:0' is not available: no CUDA device on this machine"):
        check_device("cuda:0", "--device")
    assert default_device() == torch.device("cpu")
