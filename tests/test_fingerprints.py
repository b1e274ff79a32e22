"""Fingerprints of unchanged configs stay the same: a run directory made by an earlier ablate is still accepted.

The hashes below were printed by ablate at 588b58a (before the config became typed specs), from the configs these
overrides compose: they are facts about run directories on disk, not values computed by the code under test.
"""
import pytest

from ablate.config import compose
from ablate.config.spec import to_spec
from ablate.record import fingerprint

PINNED = {
    (): "a043da273a6ff190",
    ("model=xs", "mixer=identity"): "6aa625df77495e33",
    ("train=paper", "data=folder", "data.root=/tmp"): "265ff6e188179ac6",
    ("+sweep/table5=ppaa",): "1f3f7704c86d5724",
}


@pytest.mark.parametrize("overrides", list(PINNED))
def test_fingerprints_of_unchanged_configs_stay_the_same(overrides):
    spec = to_spec(compose(list(overrides)))
    assert fingerprint(spec.result_config(world_size=1)) == PINNED[overrides]


def test_settings_that_do_not_decide_a_result_leave_the_fingerprint_unchanged(tmp_path):
    base = to_spec(compose(["data=folder", "data.root=/tmp"])).result_config(world_size=1)
    other = to_spec(compose(["data=folder", f"data.root={tmp_path}", "data.verify=false", "train.check_every=3",
                             "train.resume=false", "wandb.enabled=true"])).result_config(world_size=1)
    assert fingerprint(other) == fingerprint(base)


def test_the_per_process_batch_is_not_part_of_the_fingerprint():
    # train=paper fixes the global batch at 1024: 128 × 8 accumulation steps or 256 × 4 train the same recipe.
    a = to_spec(compose(["train=paper", "train.batch_size=128"])).result_config(world_size=1)
    b = to_spec(compose(["train=paper", "train.batch_size=256"])).result_config(world_size=1)
    assert fingerprint(a) == fingerprint(b)
