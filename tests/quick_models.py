"""A small fine-tuned SoundNet classifier for the prediction, streaming and export tests (trained in ~5 s)."""

from __future__ import annotations

from pathlib import Path

_BUILT: dict[str, Path] = {}

#: EmoDB speakers the quick model is trained on (150 clips, 7 emotions)
SPEAKERS = ("03", "08", "09")


def quick_soundnet(root: Path) -> Path:
    """Train (once per process) SoundNet8 conv5 + mean/max head, frozen backbone, 4 epochs; return its folder."""
    if "soundnet" in _BUILT:
        return _BUILT["soundnet"]
    import pytest

    from serkit.artifact import save_model
    from serkit.corpora import load_corpus
    from serkit.models.neural import SoundNetClassifier
    from tests.conftest import data_dir

    try:
        from serkit.networks.soundnet import SoundNet8

        SoundNet8(pretrained=True)
    except Exception as exc:  # no cached weights and no registry: the tests cannot build the model
        pytest.skip(f"SoundNet weights unavailable ({exc})")
    spec = f"emodb:{data_dir('emodb')}"
    utterances = [u for u in load_corpus(spec) if u.speaker in SPEAKERS]
    model = SoundNetClassifier(
        layer="conv5",
        pool="meanmax",
        strategy="freeze",
        train={"epochs": 4, "val_fraction": 0.0, "min_epochs": 1, "crop_seconds": 2.0},
    )
    model.fit(utterances, progress=False)
    out = save_model(
        model, Path(root) / "soundnet-quick", trained_on={"corpora": [spec], "n_utterances": len(utterances)}
    )
    _BUILT["soundnet"] = out
    return out
