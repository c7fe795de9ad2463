"""Where the plugin's own files are: the plugin root holds schema.sql, views.sql and templates/."""

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = PLUGIN_DIR / "templates"
