"""Adapters travel: they record a portable base (the hub id, never our cache path), the embedded model's
hub id maps to the embedded copy offline, and a foreign adapter's declared base must be the loaded one."""

from __future__ import annotations

import json

import pytest

from forgetless.errors import ModelError
from forgetless.models import load
from forgetless.models.embedded import EMBEDDED_HUB_ID, EMBEDDED_ID
from forgetless.train.config import TrainConfig
from forgetless.train.run import train


def test_portable_ids(tmp_path):
    assert load.portable_id(EMBEDDED_ID, "/root/.cache/forgetless/models/x") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert load.portable_id("org/model", "org/model") == "org/model"
    assert load.portable_id(str(tmp_path), str(tmp_path), "org/model") == "org/model"  # a local copy names its id
    assert load.portable_id(str(tmp_path), str(tmp_path), str(tmp_path)) == str(tmp_path)


def test_the_embedded_hub_id_is_the_embedded_copy_offline(monkeypatch):
    monkeypatch.setattr(load, "_hub_cached", lambda repo: False)
    model_id, path = load.resolve_model(EMBEDDED_HUB_ID)
    assert model_id == EMBEDDED_ID and path == str(load.embedded_model_dir())


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_model_dir):
    from tests.conftest import QA_ROWS, write_jsonl

    work = tmp_path_factory.mktemp("portable")
    data = write_jsonl(work / "qa.jsonl", QA_ROWS)
    out = work / "adapter"
    train(TrainConfig(model=str(tiny_model_dir), data=str(data), output=str(out), max_steps=2, batch_size=2))
    return out


def test_adapters_record_the_portable_base(adapter, tiny_model_dir, monkeypatch):
    config = json.loads((adapter / "adapter_config.json").read_text())
    manifest = json.loads((adapter / "forgetless.json").read_text())
    assert config["base_model_name_or_path"] == manifest["base_model_hub_id"] == str(tiny_model_dir.resolve())
    assert manifest["base_fingerprint"]  # our own check stays in forgetless.json


def test_lora_save_writes_the_hub_id_not_the_load_path(adapter, tmp_path):
    from forgetless.adapters.loading import load_with_adapter
    from forgetless.adapters.lora.method import LoraMethod

    model, _, info = load_with_adapter(None, adapter)
    cached = load.ModelInfo(EMBEDDED_ID, "/cache/models/SmolLM2", info.fingerprint, EMBEDDED_HUB_ID)
    LoraMethod.save(LoraMethod(None), model, tmp_path / "again", cached)
    saved = json.loads((tmp_path / "again" / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == EMBEDDED_HUB_ID


def _foreign(adapter, tmp_path, declared: str):
    import shutil

    foreign = shutil.copytree(adapter, tmp_path / "foreign")
    (foreign / "forgetless.json").unlink()  # made by another tool: no fingerprint of ours
    config = json.loads((foreign / "adapter_config.json").read_text())
    (foreign / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": declared}))
    return foreign


def test_a_foreign_adapter_for_another_base_is_refused(adapter, tmp_path, tiny_model_dir):
    from forgetless.adapters.loading import load_with_adapter

    foreign = _foreign(adapter, tmp_path, "HuggingFaceTB/SmolLM2-360M-Instruct")
    with pytest.raises(ModelError, match="declares base model HuggingFaceTB/SmolLM2-360M-Instruct"):
        load_with_adapter(str(tiny_model_dir), foreign)


def test_a_foreign_adapter_for_the_loaded_base_loads(adapter, tmp_path, tiny_model_dir):
    from forgetless.adapters.loading import load_with_adapter

    foreign = _foreign(adapter, tmp_path, str(tiny_model_dir))
    model, _, info = load_with_adapter(str(tiny_model_dir), foreign)
    assert info.model_id == str(tiny_model_dir.resolve()) and hasattr(model, "disable_adapter")


def test_every_adapter_has_a_hub_model_card(adapter):
    card = (adapter / "README.md").read_text()
    front = card.split("---")[1]
    import yaml

    meta = yaml.safe_load(front)
    assert meta["library_name"] == "peft"
    manifest = json.loads((adapter / "forgetless.json").read_text())
    assert meta["base_model"] == manifest["base_model_hub_id"] and "forgetless" in meta["tags"]
    assert manifest["data_sha256"] in card and "More Information Needed" not in card  # not peft's placeholder


def test_the_card_reports_an_audit_with_intervals():
    from forgetless.adapters.card import model_card

    audit = {
        "recipe": "forgetless",
        "reliability": 0.95,
        "highly_known_kept": 0.83,
        "highly_known_kept_ci95": [0.72, 0.91],
        "mmlu_before": 0.2,
        "mmlu_after": 0.21,
        "mmlu_delta_stderr": 0.01,
    }
    card = model_card({"method": "lora", "config": {}}, "org/base", audit)
    assert "HighlyKnown facts kept (never trained): 0.83 [0.72, 0.91]" in card
    assert "MMLU: 0.200 -> 0.210 (± 0.010 paired s.e.)" in card and "base_model: org/base" in card
