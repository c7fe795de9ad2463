"""Unit tests of the file-cleanup job type: payload validation, rejected roots and glob patterns."""

import os
from pathlib import Path

import pytest

from nself_jobs.errors import ValidationError
from nself_jobs.jobtypes import file_cleanup
from nself_jobs.settings import load_settings


@pytest.fixture
def home(tmp_path):
    directory = tmp_path / "home-of-worker"
    directory.mkdir()
    return directory


@pytest.fixture
def settings(tmp_path, home):
    return load_settings(environ={"HOME": str(home)}, project_dir=tmp_path)


@pytest.fixture
def root(tmp_path):
    directory = tmp_path / "cleanup-root"
    directory.mkdir()
    return directory


def files_payload(root, **fields):
    payload = {"target": "files", "root": str(root), "pattern": "*.log", "olderThanMs": 60_000}
    payload.update(fields)
    return payload


def validation_error(settings, payload):
    with pytest.raises(ValidationError) as caught:
        file_cleanup.validate(payload, settings)
    return caught.value


# --- Rejected roots -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, reason",
    [
        ("/", "file system root"),
        ("//", "file system root"),
        ("/root", "home directory"),
        ("/root/", "home directory"),
        ("/root/../", "file system root"),
        ("/home", "contains the home directories"),
        ("/home/alice", "home directory"),
        ("/home/alice/", "home directory"),
        ("/srv/users/alice", "home directory"),
        ("/srv/users", "contains the home directory /srv/users/alice"),
        ("/srv", "contains the home directory /srv/users/alice"),
    ],
)
def test_rejected_roots(path, reason):
    assert reason in file_cleanup.rejected_root_reason(path, [Path("/srv/users/alice")])


@pytest.mark.parametrize("path", ["/home/alice/app/logs", "/root/.cache/app", "/var/log/app", "/srv/data", "/tmp/x"])
def test_directories_inside_or_beside_homes_are_allowed(path):
    assert file_cleanup.rejected_root_reason(path, [Path("/srv/users/alice")]) is None


def test_validate_rejects_worker_home(settings, home):
    error = validation_error(settings, files_payload(home))

    assert error.field == "payload.root"
    assert "home directory" in error.message


def test_validate_rejects_parent_of_worker_home(settings, home):
    error = validation_error(settings, files_payload(home.parent))

    assert error.field == "payload.root"
    assert f"contains the home directory {home}" in error.message


def test_validate_rejects_symlink_to_slash(settings, tmp_path):
    os.symlink("/", tmp_path / "link-to-slash")

    error = validation_error(settings, files_payload(tmp_path / "link-to-slash"))

    assert error.field == "payload.root"
    assert "file system root" in error.message


@pytest.mark.parametrize("value", ["/", "/root", "/home"])
def test_validate_rejects_system_roots(settings, value):
    error = validation_error(settings, files_payload(value))

    assert error.field == "payload.root"
    assert "is not allowed as root" in error.message


def test_validate_rejects_relative_root(settings):
    error = validation_error(settings, files_payload("logs"))

    assert error.field == "payload.root"
    assert "not an absolute path" in error.message


def test_validate_rejects_missing_root(settings, tmp_path):
    error = validation_error(settings, files_payload(tmp_path / "missing"))

    assert error.field == "payload.root"
    assert "not found" in error.message


def test_validate_rejects_file_as_root(settings, tmp_path):
    (tmp_path / "file").write_text("x")

    error = validation_error(settings, files_payload(tmp_path / "file"))

    assert error.field == "payload.root"


# --- Payload fields ----------------------------------------------------------------------------


def test_validate_files_payload(settings, root):
    normalised = file_cleanup.validate(files_payload(root, pattern="**/*.tmp"), settings)

    assert normalised == {
        "target": "files",
        "root": str(root),
        "pattern": "**/*.tmp",
        "olderThanMs": 60_000,
        "dryRun": False,
    }


@pytest.mark.parametrize(
    "fields, field_path",
    [
        ({"pattern": "/etc/*.conf"}, "payload.pattern"),
        ({"pattern": "../*.log"}, "payload.pattern"),
        ({"pattern": "logs/../../x"}, "payload.pattern"),
        ({"pattern": "logs//x"}, "payload.pattern"),
        ({"pattern": "./x"}, "payload.pattern"),
        ({"pattern": ""}, "payload.pattern"),
        ({"pattern": 5}, "payload.pattern"),
        ({"olderThanMs": None}, "payload.olderThanMs"),
        ({"olderThanMs": -1}, "payload.olderThanMs"),
        ({"olderThanMs": True}, "payload.olderThanMs"),
        ({"olderThanMs": "60000"}, "payload.olderThanMs"),
        ({"dryRun": "yes"}, "payload.dryRun"),
    ],
)
def test_invalid_files_payload_names_field(settings, root, fields, field_path):
    error = validation_error(settings, files_payload(root, **fields))

    assert error.field == field_path


@pytest.mark.parametrize("target", [None, "logs", ""])
def test_validate_requires_known_target(settings, target):
    error = validation_error(settings, {"target": target})

    assert error.field == "payload.target"


def test_validate_jobs_payload_keeps_ages_unset(settings):
    normalised = file_cleanup.validate({"target": "jobs"}, settings)

    assert normalised == {"target": "jobs", "batchSize": 1000, "dryRun": False}


def test_validate_jobs_payload_with_ages(settings):
    normalised = file_cleanup.validate(
        {"target": "jobs", "completedOlderThanMs": 0, "failedOlderThanMs": 3_600_000, "batchSize": 10}, settings
    )

    assert normalised["completedOlderThanMs"] == 0
    assert normalised["failedOlderThanMs"] == 3_600_000
    assert normalised["batchSize"] == 10


@pytest.mark.parametrize(
    "fields, field_path",
    [
        ({"completedOlderThanMs": -5}, "payload.completedOlderThanMs"),
        ({"failedOlderThanMs": 1.5}, "payload.failedOlderThanMs"),
        ({"batchSize": 0}, "payload.batchSize"),
        ({"batchSize": 10_001}, "payload.batchSize"),
        ({"batchSize": False}, "payload.batchSize"),
        ({"dryRun": 1}, "payload.dryRun"),
    ],
)
def test_invalid_jobs_payload_names_field(settings, fields, field_path):
    error = validation_error(settings, {"target": "jobs", **fields})

    assert error.field == field_path


def test_validate_rejects_non_object(settings):
    assert validation_error(settings, ["jobs"]).field == "payload"


# --- Glob patterns --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, path, matches",
    [
        ("*.log", "app.log", True),
        ("*.log", ".hidden.log", True),
        ("*.log", "sub/app.log", False),
        ("*.log", "app.log.1", False),
        ("**/*.tmp", "a.tmp", True),
        ("**/*.tmp", "x/y/z/a.tmp", True),
        ("**/*.tmp", "x/a.tmpx", False),
        ("logs/*.log", "logs/a.log", True),
        ("logs/*.log", "a.log", False),
        ("logs/*.log", "logs/old/a.log", False),
        ("cache/**/*.bin", "cache/a.bin", True),
        ("cache/**/*.bin", "cache/x/y/a.bin", True),
        ("cache/**/*.bin", "other/cache/a.bin", False),
        ("**", "a", True),
        ("**", "x/y/z", True),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("a?c", "a/c", False),
        ("[ab].txt", "a.txt", True),
        ("[ab].txt", "c.txt", False),
        ("[!x]*.txt", "y.txt", True),
        ("[!x]*.txt", "x.txt", False),
        ("a[!x]b", "a/b", False),
        ("[", "[", True),
        ("file(1)+.txt", "file(1)+.txt", True),
        ("*.log", "line\nbreak.log", True),
    ],
)
def test_pattern_matching(pattern, path, matches):
    regex, _ = file_cleanup.compile_pattern(pattern)

    assert bool(regex.fullmatch(path)) is matches


@pytest.mark.parametrize(
    "pattern, max_depth",
    [("*.log", 1), ("logs/*.log", 2), ("a/b/c", 3), ("**/*.tmp", None), ("cache/**", None)],
)
def test_pattern_depth(pattern, max_depth):
    _, depth = file_cleanup.compile_pattern(pattern)

    assert depth == max_depth


def test_job_type_is_registered():
    from nself_jobs import jobtypes

    assert jobtypes.get("file-cleanup") is file_cleanup.JOB_TYPE
