from pathlib import Path

import pytest

from tunesmith.config import ProjectConfig, load_config
from tunesmith.errors import TunesmithError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_defaults_validate():
    cfg = ProjectConfig()
    assert cfg.train.resolved_lr() == 2e-4
    cfg.train.finetune = "full"
    assert cfg.train.resolved_lr() == 2e-5


def test_typo_names_key_and_suggestion(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lrr: 1e-4\n")
    with pytest.raises(TunesmithError) as exc:
        load_config(p)
    assert "train.lrr" in exc.value.message and "train.lr" in exc.value.message.split("Did you mean")[1]


def test_wrong_type_names_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lora:\n  r: lots\n")
    with pytest.raises(TunesmithError) as exc:
        load_config(p)
    assert "lora.r" in exc.value.message and "'lots'" in exc.value.message


def test_dotted_overrides_are_typed(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochs: 1\n")
    cfg = load_config(p, ["train.lr=1e-4", "lora.target_modules=[q_proj,v_proj]", "train.packing=false"])
    assert (
        cfg.train.lr == 1e-4
        and cfg.lora.target_modules == ["q_proj", "v_proj"]
        and cfg.train.packing is False
    )


def test_cross_field_rule_names_fix():
    with pytest.raises(TunesmithError) as exc:
        load_config(None, ["train.method=ppo"])
    assert "train.reward_model" in exc.value.message


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(TunesmithError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(TunesmithError, match="folder"):
        load_config(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(TunesmithError, match="not valid YAML"):
        load_config(bad)


def test_relative_data_paths_resolve_against_config_folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text("")
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  train: data/train.jsonl\n")
    assert load_config(p).data.train == (tmp_path / "data" / "train.jsonl").resolve()


@pytest.mark.parametrize(
    "path", sorted((REPO / "configs").glob("*.yaml")) + sorted((REPO / "examples").rglob("*.yaml"))
)
def test_every_shipped_config_validates(path):
    load_config(path)


def test_rag_index_folder_is_resolved_and_a_server_url_kept_as_written(tmp_path):
    p = tmp_path / "tunesmith.yaml"
    p.write_text("rag:\n  index: idx\n")
    assert load_config(p).rag.index == str((tmp_path / "idx").resolve())
    url = "postgresql://user:secret@db.example:5432/rag"
    p.write_text(f"rag:\n  index: {url}\n")
    assert load_config(p).rag.index == url  # a Path would have collapsed '//' and made it relative


def test_a_missing_config_beside_a_near_name_suggests_it(tmp_path):
    """`tunesmith train tunesmith.yml` beside the tunesmith.yaml that init wrote used to say "Create one with
    `tunesmith init DIR`"."""
    (tmp_path / "tunesmith.yaml").write_text("model:\n  name: tiny\n")
    with pytest.raises(TunesmithError, match="does not exist") as exc:
        load_config(tmp_path / "tunesmith.yml")
    assert exc.value.hint == f"Did you mean {tmp_path / 'tunesmith.yaml'}?"
    with pytest.raises(TunesmithError) as exc:
        load_config(tmp_path / "other" / "project.yaml")
    assert "tunesmith init" in exc.value.hint
