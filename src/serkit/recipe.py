"""Recipes: YAML files that say how to build and train a model, mapped onto a dataclass.

A recipe is selected by name (the YAML files shipped in ``serkit/recipes/``) or by path, and
overridden from the command line with dotted keys (``--set model.classifier=svm-rbf``).
Runtime options (threads, device, cache directory) are not part of a recipe and are never saved
with a model.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ConfigError

__all__ = ["Recipe", "load_recipe", "recipe_names", "RECIPE_DIR"]

RECIPE_DIR = Path(__file__).parent / "recipes"


@dataclass
class Recipe:
    """How to build a model.

    Attributes
    ----------
    name
        Short name (the file stem for shipped recipes).
    description
        One line for ``serkit recipes`` and reports.
    model
        The model section: ``family`` plus the family's options (see ``serkit.models``).
    label_set
        ``"native"`` (the corpus' own labels), ``"6class"`` or ``"4class"``.
    protocol
        Default evaluation protocol (``loso``, ``speaker-kfold:5``, ...).
    pretrain
        Options of ``serkit pretrain`` for this recipe's network
        (:class:`serkit.training.pretrain.PretrainConfig`: epochs, batch size, temperature, …).
    """

    name: str
    model: dict
    description: str = ""
    label_set: str = "native"
    protocol: str = "loso"
    extra: dict = field(default_factory=dict)
    pretrain: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "<dict>") -> Recipe:
        if not isinstance(data, dict):
            raise ConfigError(f"recipe {source} must be a YAML mapping with at least 'name' and 'model'")
        known = {"name", "model", "description", "label_set", "protocol", "extra", "pretrain"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"recipe {source}: unknown keys {unknown}; valid keys: {', '.join(sorted(known))}")
        if "model" not in data or not isinstance(data["model"], dict) or "family" not in data["model"]:
            raise ConfigError(f"recipe {source} needs a 'model' mapping with a 'family' key")
        data = copy.deepcopy(data)
        data.setdefault("name", Path(source).stem)
        return cls(**data)


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def _parse_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a recipe mapping."""
    data = copy.deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value, e.g. model.classifier=svm-rbf")
        key, value = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{p}' is not a section")
        node[parts[-1]] = _parse_value(value)
    return data


def load_recipe(name_or_path, overrides: list[str] | None = None) -> Recipe:
    """A recipe by shipped name (``"compare-svm"``) or YAML path, with optional overrides."""
    import yaml

    if isinstance(name_or_path, Recipe):
        return Recipe.from_dict(apply_overrides(name_or_path.to_dict(), overrides), source=name_or_path.name)
    if isinstance(name_or_path, dict):
        return Recipe.from_dict(apply_overrides(name_or_path, overrides))
    text = str(name_or_path)
    path = Path(text)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = RECIPE_DIR / f"{text}.yaml"
        if not path.exists():
            raise ConfigError(
                f"unknown recipe {text!r}; shipped recipes: {', '.join(recipe_names())} (or pass a .yaml path)"
            )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe '{path}' is not valid YAML: {exc}") from None
    return Recipe.from_dict(apply_overrides(data, overrides), source=str(path))
