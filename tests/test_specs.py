"""The typed specs past the config's edge: one field per config key, frozen, and what run/ and data/ read."""
import dataclasses

import pytest

from ablate import build_model, compose
from ablate.config.checks import known_keys
from ablate.config.spec import to_spec
from ablate.specs import DataSpec, ModelSpec, RunSpec, TrainSpec, WandbSpec

GROUPS = {"model": ModelSpec, "data": DataSpec, "train": TrainSpec, "wandb": WandbSpec}
# Config keys the spec holds under another name: the name of a group's choice, and the stages' mixers.
RENAMED = {"mixer.name": "mixers", "stage_mixers": "mixers", "norm.name": "norm", "act.name": "act"}


def test_every_key_of_conf_is_a_field_of_the_specs_and_every_field_a_key():
    fields = {f"{group}.{f.name}" for group, kind in GROUPS.items() for f in dataclasses.fields(kind)}
    top = {f.name for f in dataclasses.fields(RunSpec)} - set(GROUPS) - {"name", "overrides", "free_overrides",
                                                                          "config"}
    keys = set(known_keys())
    assert {k for k in keys if k.split(".")[0] in GROUPS} == fields
    assert {RENAMED.get(k, k) for k in keys if k.split(".")[0] not in GROUPS} == top


def test_a_spec_holds_the_configs_values_typed_and_frozen():
    spec = to_spec(compose(["model=xs", "stage_mixers=[pooling,pooling,attention,attention]", "train.lr=0.5"]),
                   ["model=xs", "train.lr=0.5"])
    assert spec.model.depths == (1, 1, 3, 1) and spec.mixers == ("pooling", "pooling", "attention", "attention")
    assert spec.train.lr == 0.5 and spec.data.loader == "auto" and spec.data.val_fraction == 0.2
    assert spec.free_overrides == ("model=xs", "train.lr=0.5") and spec.name.group == "Custom"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.train.lr = 1.0  # type: ignore[misc]


def test_build_model_takes_a_config_or_its_spec():
    cfg = compose(["model=xs", "mixer=identity"])
    a, b = build_model(cfg, 10), build_model(to_spec(cfg), 10)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]


@pytest.mark.parametrize("world_size,batch,expected", [(1, 128, 8), (2, 128, 4), (8, 128, 1), (4, 256, 1)])
def test_accumulation_steps_make_up_the_global_batch(world_size, batch, expected):
    train = to_spec(compose(["train=paper", f"train.batch_size={batch}"])).train
    assert train.global_batch == 1024 and train.accumulation_steps(world_size) == expected
