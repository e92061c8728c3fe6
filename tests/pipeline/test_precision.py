"""train.precision and train.compile: the weights stay float32, the fingerprint records
the choice only when it is not the default, compiled training saves the model's own
state, and TF32 is switched off (and restored) for fp32."""

from __future__ import annotations

import pytest
import torch

from normbounds.errors import ConfigError
from normbounds.pipeline import checkpoints, precision
from normbounds.pipeline.config import Entry, parse_params
from normbounds.pipeline.data import Split
from normbounds.pipeline.models import Arch
from normbounds.pipeline.train import fingerprint, train_entry

from pipeline_helpers import tiny_params

ARCH = Arch((1, 8, 8), 10, 2, 3)
ENTRY = Entry(2, 3, 0)


def _train(folder, **train) -> dict[str, torch.Tensor]:
    cfg = parse_params(tiny_params(train={"epochs": 2, "batch_size": 16, "save_every": 1,
                                          **train}))
    gen = torch.Generator().manual_seed(0)
    data = Split(torch.rand(48, 1, 8, 8, generator=gen), torch.arange(48) % 10)
    train_entry(cfg, ENTRY, data, ARCH, folder, "digest", log=lambda _: None)
    return torch.load(folder / "epoch_0002.pt", weights_only=True)


def test_fingerprint_leaves_out_the_new_keys_at_their_defaults():
    base = fingerprint(parse_params(tiny_params()), ENTRY, "d")["train"]
    assert "precision" not in base and "compile" not in base  # old runs keep their fingerprint
    bf16 = fingerprint(parse_params(tiny_params(train={"precision": "bf16"})), ENTRY, "d")
    assert bf16["train"]["precision"] == "bf16"
    assert {k: v for k, v in bf16["train"].items() if k != "precision"} == base


def test_bf16_trains_float32_weights_that_differ_from_fp32(tmp_path):
    fp32 = _train(tmp_path / "fp32")
    bf16 = _train(tmp_path / "bf16", precision="bf16")
    assert fp32["model"].keys() == bf16["model"].keys()
    assert all(v.dtype == torch.float32 for v in bf16["model"].values())
    assert not torch.equal(fp32["model"]["head.weight"], bf16["model"]["head.weight"])
    assert bf16["config"]["train"]["precision"] == "bf16"
    # tf32 has no effect on a CPU: the same bytes as fp32, under another fingerprint
    tf32 = _train(tmp_path / "tf32", precision="tf32")
    assert all(torch.equal(tf32["model"][k], v) for k, v in fp32["model"].items())


def test_compiled_training_saves_the_models_own_state(tmp_path, monkeypatch):
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(precision, "COMPILE_BACKEND", "eager")  # no compiler on CI
    monkeypatch.setattr(inductor_config, "deterministic", False)
    eager = _train(tmp_path / "eager")
    before = torch.are_deterministic_algorithms_enabled()
    torch._C._set_deterministic_algorithms(True)  # what runtime.setup_torch does
    try:
        compiled = _train(tmp_path / "compiled", compile="default")
    finally:
        torch._C._set_deterministic_algorithms(before)
    # the stage's deterministic mode reached inductor too (setup_torch leaves it unloaded)
    assert inductor_config.deterministic is True
    assert compiled["model"].keys() == eager["model"].keys()  # no "_orig_mod." prefix
    assert all(torch.equal(compiled["model"][k], v) for k, v in eager["model"].items())
    model, meta = checkpoints.load(tmp_path / "compiled" / "epoch_0002.pt")
    assert meta["config"]["train"]["compile"] == "default"


def test_fp32_switches_tf32_off_and_restores_it():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    with precision.tf32_products(precision.PRECISIONS["fp32"].tf32):
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


@pytest.mark.parametrize(("key", "value"), [("precision", "fp16"), ("compile", "max")])
def test_unknown_values_list_the_allowed_ones(key, value):
    with pytest.raises(ConfigError, match=rf"train\.{key}") as err:
        parse_params(tiny_params(train={key: value}))
    allowed = precision.PRECISIONS if key == "precision" else precision.COMPILE_MODES
    assert all(name in str(err.value) for name in allowed)
