"""Which code a run's record names: the commit of the checkout that ran, with its dirty flag, or ablate's version."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ablate.record import git_state, versions

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture(autouse=True)
def no_repository_above(tmp_path, monkeypatch):
    """git looks no higher than tmp_path, whatever repository holds the machine's temp folder."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org",
                           "-c", "commit.gpgsign=false", *args], check=True, capture_output=True, text=True).stdout


def package_in(folder: Path) -> Path:
    """A package folder, as ablate's is: ``__init__.py`` and a module."""
    package = folder / "ablate"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""the package"""\n')
    (package / "train.py").write_text("LR = 0.1\n")
    return package


def repository(folder: Path) -> Path:
    folder.mkdir()
    git(folder, "init", "-q")
    (folder / "README.md").write_text("another project\n")
    return folder


def test_a_checkout_records_its_commit_and_whether_the_package_differs_from_it(tmp_path):
    repo = repository(tmp_path / "checkout")
    package = package_in(repo)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first")
    head = git(repo, "log", "-1", "--format=%H").strip()
    assert len(head) == 40
    assert git_state(package) == (head, False)
    (repo / "README.md").write_text("edited outside the package\n")
    assert git_state(package) == (head, False)
    (package / "train.py").write_text("LR = 0.2\n")
    assert git_state(package) == (head, True)
    git(repo, "checkout", "-q", "--", ".")
    (package / "new_mixer.py").write_text("")  # a module not committed yet also changes what ran
    assert git_state(package) == (head, True)


@pytest.mark.parametrize("ignored", [False, True])
def test_an_installed_copy_inside_another_repository_records_no_commit(tmp_path, ignored):
    repo = repository(tmp_path / "project")
    if ignored:
        (repo / ".gitignore").write_text(".venv/\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "the project's own commit")
    package = package_in(repo / ".venv" / "lib" / "python3.11" / "site-packages")
    assert git_state(package) == (None, None)


def test_a_copy_outside_any_repository_records_no_commit(tmp_path):
    assert git_state(package_in(tmp_path / "site-packages")) == (None, None)


def test_the_record_names_ablates_version_for_an_installed_copy():
    declared = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert versions()["ablate"] == declared
