import pickle

import numpy as np
import pytest

from featx.backbones.torchfile import LEGACY_MAGIC, LEGACY_PROTOCOL, read_legacy_state_dict
from featx.backbones.weights import lite_package_checkpoint
from featx.exceptions import WeightsError


def test_reads_every_tensor_of_the_lite0_checkpoint():
    state = read_legacy_state_dict(lite_package_checkpoint("efficientnet_lite0"))
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert np.isfinite(state["_conv_head.weight"]).all()
    assert state["_bn0.running_var"].min() >= 0  # variances: a misaligned read gives negatives


def test_refuses_a_checkpoint_that_asks_for_other_classes(tmp_path):
    hostile = tmp_path / "evil.pth"
    with open(hostile, "wb") as handle:
        for obj in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True}):
            pickle.dump(obj, handle, protocol=2)
        handle.write(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(WeightsError, match="refusing to load os.system"):
        read_legacy_state_dict(hostile)


def test_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"not a pickle at all")
    with pytest.raises(WeightsError, match="bogus.pth"):
        read_legacy_state_dict(bogus)
