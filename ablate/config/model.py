"""``ablate.build_model``: the MetaFormer a config (or the RunSpec made from it) describes."""
from omegaconf import DictConfig

from ablate.config.spec import to_spec
from ablate.model import MetaFormer, build
from ablate.specs import RunSpec


def build_model(cfg: DictConfig | RunSpec, num_classes: int) -> MetaFormer:
    """The MetaFormer that ``cfg`` describes: a composed config (checked and turned into a RunSpec here) or a spec."""
    return build.build_model(cfg if isinstance(cfg, RunSpec) else to_spec(cfg), num_classes)
