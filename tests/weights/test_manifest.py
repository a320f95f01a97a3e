"""The pretrained registry: packaged entries, user manifests from ROOST_MANIFEST, register_weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import roost
from roost.errors import ManifestError, UnknownModelError
from roost.weights.manifest import REGISTRY, PretrainedEntry, packaged_manifest
from tests.conftest import SHARED
from tests.weights.conftest import entry, write_manifest

SPEC = SHARED / "spec" / "pretrained_rope_vit.json"


def test_packaged_manifest_is_the_spec(shared_dir: Path) -> None:
    spec = json.loads(SPEC.read_text())
    packaged = packaged_manifest()
    assert sorted(packaged) == sorted(spec) and len(packaged) == 18
    for name, raw in spec.items():
        e = packaged[name]
        assert e.network == raw["net"]["network"] and e.tag == raw["net"]["tag"]
        assert e.resolution == tuple(raw["resolution"])
        assert e.formats == {f: (v["file_size"], v["sha256"]) for f, v in raw["formats"].items()}
        assert e.file_url("pt") == f"{raw['url']}/{name}.pt"


def test_list_pretrained_models(roost_env: Path) -> None:
    names = roost.list_pretrained_models()
    assert names == sorted(names) and len(names) == 18
    assert roost.list_pretrained_models("rope_vit_reg4_b14_capi-inat21*") == [
        "rope_vit_reg4_b14_capi-inat21",
        "rope_vit_reg4_b14_capi-inat21-224px",
    ]
    assert roost.list_pretrained_models(None) == names
    assert roost.list_pretrained_models("nothing*") == []


def test_register_weights(roost_env: Path) -> None:
    roost.register_weights("my_weights", entry("http://127.0.0.1:1/x", "rope_vit_reg4_b14", {"pt": b"abc"}))
    assert "my_weights" in roost.list_pretrained_models()
    e = REGISTRY.get("my_weights")
    assert e.network == "rope_vit_reg4_b14" and e.tag == "tiny" and e.task == "image_classification"


def test_user_manifests_read_at_call_time(roost_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one = write_manifest(tmp_path / "one.json", {"a_w": entry("http://h/1", "rope_vit_s14", {"pt": b"1"})})
    two = write_manifest(
        tmp_path / "two.json",
        {
            "b_w": entry("http://h/2", "rope_vit_s14", {"pt": b"2"}),
            "a_w": entry("http://h/override", "rope_vit_s14", {"pt": b"3"}),
        },
    )
    assert "a_w" not in roost.list_pretrained_models()
    monkeypatch.setenv("ROOST_MANIFEST", f"{one}:{two}")
    assert {"a_w", "b_w"} <= set(roost.list_pretrained_models())
    assert REGISTRY.get("a_w").url == "http://h/override"  # later manifests win
    roost.register_weights("a_w", entry("http://h/registered", "rope_vit_s14", {"pt": b"4"}))
    assert REGISTRY.get("a_w").url == "http://h/registered"  # registrations win over files


def test_unknown_keys_ignored_and_defaults() -> None:
    raw = {
        "formats": {"pt": {"file_size": 1.5, "sha256": "AB" * 32, "extra": 1}},
        "net": {"network": "rope_vit_b14", "epoch": 200},
        "resolution": [336, 336],
        "something_new": True,
    }
    e = PretrainedEntry.from_dict("vit_w", raw)
    assert e.url == "https://f000.backblazeb2.com/file/birder/models"
    assert e.tag is None and e.epoch == 200 and e.description == ""
    assert e.sha256("pt") == "ab" * 32  # normalised to lower case
    assert e.file_url("pt") == "https://f000.backblazeb2.com/file/birder/models/vit_w.pt"


def test_malformed_manifests(roost_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ManifestError, match="'bad'"):
        roost.register_weights("bad", {"formats": {}})
    monkeypatch.setenv("ROOST_MANIFEST", str(tmp_path / "absent.json"))
    with pytest.raises(ManifestError, match=r"absent\.json"):
        roost.list_pretrained_models()
    (tmp_path / "broken.json").write_text("{not json")
    monkeypatch.setenv("ROOST_MANIFEST", str(tmp_path / "broken.json"))
    with pytest.raises(ManifestError, match="not valid JSON"):
        roost.list_pretrained_models()


def test_unknown_weights_name(roost_env: Path) -> None:
    with pytest.raises(UnknownModelError) as err:
        REGISTRY.get("rope_vit_reg4_b14_capi-places")
    assert isinstance(err.value, KeyError)
    assert "rope_vit_reg4_b14_capi-places365" in err.value.suggestions
    assert "pretrained weights" in str(err.value)


def test_wrong_format_message() -> None:
    e = packaged_manifest()["rope_vit_reg4_b14_capi"]
    with pytest.raises(ValueError) as err:
        e.check_format("safetensors")
    assert str(err.value) == (
        "Requested format 'safetensors' not available for rope_vit_reg4_b14_capi, available formats are: pt"
    )
