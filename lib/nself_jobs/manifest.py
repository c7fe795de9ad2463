"""Generate plugin.json, the manifest that the nself CLI reads, from plugin.yaml.

Usage, from the plugin root::

    PYTHONPATH=lib .venv/bin/python -m nself_jobs.manifest > plugin.json
    PYTHONPATH=lib .venv/bin/python -m nself_jobs.manifest --check

The nself CLI takes the plugin's name from the first ``"name"`` line of
plugin.json (with grep and sed) and, without jq, the description and version from
the first lines that carry those keys. So ``name``, ``version`` and ``description``
are written first, before any nested object that could contain the same keys.
"""

import argparse
import json
import sys
from pathlib import Path

import yaml

from .paths import PLUGIN_DIR

YAML_PATH = PLUGIN_DIR / "plugin.yaml"
JSON_PATH = PLUGIN_DIR / "plugin.json"

REQUIRED_KEYS = ("name", "version", "description", "port", "bins", "service", "actions", "env", "tables", "views")
ENV_ENTRY_KEYS = {"description", "default", "secret", "required"}


class ManifestError(ValueError):
    """plugin.yaml is missing a key or has a value of the wrong kind; the message names it."""


def load_spec(path=YAML_PATH):
    """Read plugin.yaml and return it as a dict, in file order."""
    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(spec, dict):
        raise ManifestError(f"{path}: expected a mapping at the top level")
    return spec


def _env_value(value):
    """Return a default as the string an env file would contain, or None for unset."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _actions(spec):
    actions = {}
    for name, entry in spec["actions"].items():
        description = entry.get("description") if isinstance(entry, dict) else None
        if not isinstance(description, str) or not description.strip():
            raise ManifestError(f"actions.{name}: missing description")
        # With jq installed, nself fails on the string form ("init": "..."), so each action is an object.
        actions[name] = {"description": description}
    return actions


def _env(spec):
    """Return envVars (names by requirement) and env (each variable's details)."""
    names = {"required": [], "optional": []}
    details = {"required": {}, "optional": {}}
    for name, entry in spec["env"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("description"), str):
            raise ManifestError(f"env.{name}: missing description")
        unknown = set(entry) - ENV_ENTRY_KEYS
        if unknown:
            raise ManifestError(f"env.{name}: unknown keys {sorted(unknown)}; allowed: {sorted(ENV_ENTRY_KEYS)}")
        group = "required" if entry.get("required") else "optional"
        names[group].append(name)
        details[group][name] = {
            "description": " ".join(entry["description"].split()),
            "default": _env_value(entry.get("default")),
            "secret": bool(entry.get("secret", False)),
        }
    return names, details


def build_manifest(spec):
    """Return the plugin.json content for ``spec`` (the parsed plugin.yaml) as an ordered dict."""
    missing = [key for key in REQUIRED_KEYS if key not in spec]
    if missing:
        raise ManifestError(f"plugin.yaml: missing keys {missing}")
    if not isinstance(spec["name"], str) or not spec["name"]:
        raise ManifestError("name: expected a non-empty string")

    env_names, env_details = _env(spec)
    manifest = {
        "name": spec["name"],
        "version": str(spec["version"]),
        "description": " ".join(str(spec["description"]).split()),
    }
    for key in ("category", "tags", "port"):
        if key in spec:
            manifest[key] = spec[key]
    if "healthEndpoint" in spec:
        # `nself plugin info` requests the URL under this snake_case key.
        manifest["health_endpoint"] = spec["healthEndpoint"]
    manifest["bins"] = list(spec["bins"])
    manifest["service"] = dict(spec["service"])
    manifest["actions"] = _actions(spec)
    manifest["envVars"] = env_names
    # `nself plugin info` lists env.required and env.optional with their descriptions.
    manifest["env"] = env_details
    manifest["tables"] = list(spec["tables"])
    manifest["views"] = list(spec["views"])
    for key in ("queues", "priorities", "jobTypes", "multiApp", "hooks"):
        if key in spec:
            manifest[key] = spec[key]
    return manifest


def render(manifest):
    """Return ``manifest`` as plugin.json text: two-space indentation and a final newline."""
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nself_jobs.manifest", description=__doc__.splitlines()[0])
    parser.add_argument("--yaml", type=Path, default=YAML_PATH, help="plugin.yaml to read (default: the plugin's own)")
    parser.add_argument("--check", action="store_true",
                        help="compare with plugin.json beside the YAML file instead of printing; exit 1 when they differ")
    arguments = parser.parse_args(argv)

    try:
        text = render(build_manifest(load_spec(arguments.yaml)))
    except (ManifestError, yaml.YAMLError, OSError) as error:
        print(f"nself_jobs.manifest: {error}", file=sys.stderr)
        return 1

    if not arguments.check:
        sys.stdout.write(text)
        return 0
    json_path = arguments.yaml.with_name("plugin.json")
    try:
        current = json_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    if current != text:
        print(f"nself_jobs.manifest: {json_path} is missing or out of date; regenerate it with "
              "`PYTHONPATH=lib .venv/bin/python -m nself_jobs.manifest > plugin.json`", file=sys.stderr)
        return 1
    print(f"{json_path} matches {arguments.yaml}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
