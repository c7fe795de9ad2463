"""plugin.yaml, the generated plugin.json, the action scripts and the code must agree."""

import importlib
import json
import os
import pkgutil
import re

import pytest
import yaml

from nself_jobs import __version__, jobtypes, manifest
from nself_jobs.history.store import TABLES, VIEWS
from nself_jobs.keys import PRIORITIES
from nself_jobs.paths import PLUGIN_DIR
from nself_jobs.settings import QUEUE_NAMES, load_settings

LIB_DIR = PLUGIN_DIR / "lib" / "nself_jobs"
SCRIPTS = [PLUGIN_DIR / "install.sh", PLUGIN_DIR / "uninstall.sh", *sorted((PLUGIN_DIR / "hooks").glob("*.sh")),
           *sorted((PLUGIN_DIR / "actions").glob("*.sh")), PLUGIN_DIR / "bin" / "nself-jobs"]
# Matches env.str("NAME"...), env.int(\n "NAME"...) and the other typed readers of settings.Environment.
ENV_READ = re.compile(r'\benv\.(?:str|int|bool|choice|list)\(\s*"([A-Z][A-Z0-9_]*)"')
# Variables that the code reads but that belong to the operating system, not to the plugin.
SYSTEM_VARIABLES = {"HOME"}


@pytest.fixture(scope="module")
def spec():
    return manifest.load_spec()


@pytest.fixture(scope="module")
def plugin_json_text():
    return manifest.JSON_PATH.read_text(encoding="utf-8")


def env_reads(paths):
    names = set()
    for path in paths:
        names.update(ENV_READ.findall(path.read_text(encoding="utf-8")))
    return names - SYSTEM_VARIABLES


def test_plugin_json_is_generated_from_yaml(spec, plugin_json_text):
    expected = manifest.render(manifest.build_manifest(spec))
    assert plugin_json_text == expected, (
        "plugin.json is out of date: run `PYTHONPATH=lib .venv/bin/python -m nself_jobs.manifest > plugin.json`"
    )


def test_name_is_first_key(plugin_json_text):
    keys = list(json.loads(plugin_json_text, object_pairs_hook=lambda pairs: pairs))
    assert keys[0][0] == "name"


def test_first_name_line_gives_plugin_name(plugin_json_text):
    # The nself CLI finds the name with grep '"name"' | head -1 and a sed expression.
    first = next(line for line in plugin_json_text.splitlines() if '"name"' in line)
    assert re.sub(r'.*"name"\s*:\s*"([^"]*)".*', r"\1", first) == "jobs"


def test_top_level_lines_come_first(spec, plugin_json_text):
    # Without jq, nself reads description and version from the first line that carries each key.
    lines = plugin_json_text.splitlines()
    first_description = next(line for line in lines if '"description"' in line)
    first_version = next(line for line in lines if '"version"' in line)
    assert first_description.startswith('  "description"')
    assert first_version == f'  "version": "{spec["version"]}",'


def test_actions_use_object_form(plugin_json_text):
    actions = json.loads(plugin_json_text)["actions"]
    for name, value in actions.items():
        assert isinstance(value, dict), name
        assert value["description"], name


def test_every_action_has_script(spec):
    for name in spec["actions"]:
        assert (PLUGIN_DIR / "actions" / f"{name}.sh").is_file(), f"actions/{name}.sh is missing"


def test_every_script_is_a_listed_action(spec):
    scripts = {path.stem for path in (PLUGIN_DIR / "actions").glob("*.sh")}
    assert scripts - set(spec["actions"]) == set()


def test_action_scripts_exec_entry_point(spec):
    for name in spec["actions"]:
        lines = (PLUGIN_DIR / "actions" / f"{name}.sh").read_text(encoding="utf-8").strip().splitlines()
        assert lines[-1] == f'exec "$plugin_dir/bin/nself-jobs" {name} "$@"', name
        assert "set -euo pipefail" in lines, name


def test_action_scripts_share_one_shape(spec):
    shapes = {}
    for name in spec["actions"]:
        text = (PLUGIN_DIR / "actions" / f"{name}.sh").read_text(encoding="utf-8")
        shapes[name] = re.sub(rf"\b{re.escape(name)}\b", "ACTION", text)
    assert len(set(shapes.values())) == 1, sorted(shapes)


def test_settings_env_vars_are_documented(spec):
    read = env_reads([LIB_DIR / "settings.py"])
    assert "JOBS_DEFAULT_CONCURRENCY" in read, "the ENV_READ pattern no longer matches settings.py"
    assert sorted(read - set(spec["env"])) == []


def test_lib_env_vars_are_documented(spec):
    read = env_reads(LIB_DIR.rglob("*.py"))
    assert sorted(read - set(spec["env"])) == []


def test_documented_env_vars_appear_in_code(spec):
    sources = [*LIB_DIR.rglob("*.py"), *SCRIPTS]
    text = "\n".join(path.read_text(encoding="utf-8") for path in sources)
    stale = [name for name in spec["env"] if not re.search(rf"\b{name}\b", text)]
    assert stale == []


def test_secret_env_vars_have_no_default(spec):
    for name, entry in spec["env"].items():
        if entry.get("secret"):
            assert entry.get("default") is None, name


def test_env_defaults_match_settings(spec, tmp_path):
    home = str(tmp_path)
    described = load_settings(environ={"HOME": home}, project_dir=tmp_path).describe()
    compared = 0
    for name, value in described.items():
        default = spec["env"][name].get("default")
        if default is None:
            continue
        if isinstance(default, str) and default.startswith("~/"):
            default = home + default[1:]
        assert value == default, name
        compared += 1
    assert compared >= 15


def test_json_defaults_are_env_strings(plugin_json_text):
    optional = json.loads(plugin_json_text)["env"]["optional"]
    assert optional["JOBS_DEFAULT_CONCURRENCY"]["default"] == "5"
    assert optional["JOBS_DASHBOARD_ENABLED"]["default"] == "true"
    assert optional["JOBS_REDIS_URL"]["default"] is None
    assert optional["JOBS_SMTP_PASSWORD"]["secret"] is True


def test_version_matches_package(spec):
    assert spec["version"] == __version__


def test_port_matches_service_and_settings(spec, tmp_path):
    assert spec["port"] == 3105
    assert spec["service"]["port"] == spec["port"]
    assert load_settings(environ={"HOME": str(tmp_path)}, project_dir=tmp_path).port == spec["port"]


def test_tables_and_views_match_store(spec):
    assert tuple(spec["tables"]) == TABLES
    assert tuple(spec["views"]) == VIEWS


def test_queues_match_settings(spec):
    assert tuple(spec["queues"]) == QUEUE_NAMES


def test_priorities_match_keys(spec):
    assert spec["priorities"] == PRIORITIES


def test_job_types_match_built_in_modules(spec):
    built_in = set()
    for module_info in pkgutil.iter_modules(jobtypes.__path__):
        module = importlib.import_module(f"{jobtypes.__name__}.{module_info.name}")
        job_type = getattr(module, "JOB_TYPE", None)
        if job_type is not None:
            built_in.add(job_type.name)
    assert set(spec["jobTypes"]) == built_in


def test_bins_are_executable(spec):
    for name in spec["bins"]:
        path = PLUGIN_DIR / "bin" / name
        assert path.is_file(), name
        assert os.access(path, os.X_OK), name


def test_hook_scripts_exist(spec):
    for name, relative_path in spec["hooks"].items():
        assert (PLUGIN_DIR / relative_path).is_file(), f"hooks.{name}: {relative_path} is missing"


def test_build_rejects_action_without_description(spec):
    broken = dict(spec, actions={"init": {}})
    with pytest.raises(manifest.ManifestError, match=r"actions\.init"):
        manifest.build_manifest(broken)


def test_build_rejects_unknown_env_key(spec):
    broken = dict(spec, env={"JOBS_X": {"description": "x", "defualt": 1}})
    with pytest.raises(manifest.ManifestError, match=r"env\.JOBS_X.*defualt"):
        manifest.build_manifest(broken)


def test_build_rejects_missing_key(spec):
    broken = {key: value for key, value in spec.items() if key != "tables"}
    with pytest.raises(manifest.ManifestError, match="tables"):
        manifest.build_manifest(broken)


def test_check_mode_detects_stale_json(spec, tmp_path, capsys):
    yaml_path = tmp_path / "plugin.yaml"
    yaml_path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    json_path = tmp_path / "plugin.json"

    json_path.write_text("{}\n", encoding="utf-8")
    assert manifest.main(["--yaml", str(yaml_path), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err

    json_path.write_text(manifest.render(manifest.build_manifest(spec)), encoding="utf-8")
    assert manifest.main(["--yaml", str(yaml_path), "--check"]) == 0
