"""numpy files (the SEP decode cache's index, the EdgeTAM reference's results) are read by the one safe
loader: arrays come back, a pickled (object) array is refused before anything in it runs."""

import numpy as np
import pytest

from samrs_hf.common.safe_load import load_arrays


def test_npy_and_npz_are_read_whole(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(6).reshape(2, 3))
    np.savez(tmp_path / "b.npz", x=np.ones(2), y=np.zeros((1, 1), np.uint8))
    assert np.array_equal(load_arrays(tmp_path / "a.npy"), np.arange(6).reshape(2, 3))
    out = load_arrays(tmp_path / "b.npz")
    assert sorted(out) == ["x", "y"] and out["y"].dtype == np.uint8 and np.array_equal(out["x"], np.ones(2))


def test_a_pickled_object_array_is_refused(tmp_path):
    np.save(tmp_path / "evil.npy", np.array([{"run": "me"}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle=False"):
        load_arrays(tmp_path / "evil.npy")
