"""crm_build_info's commit: the image's baked-in value first, else the checkout's HEAD, else
"unknown" (never the HEAD of some repository that happens to enclose site-packages)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shared import metrics


def git(tree: Path, *arguments: str) -> str:
    command = ["git", "-C", str(tree), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    return subprocess.run(
        [*command, *arguments], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def code_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pretend shared/metrics.py lives in tmp_path/tree/shared, with no baked-in commit."""
    monkeypatch.delenv(metrics.COMMIT_VARIABLE, raising=False)
    tree = tmp_path / "tree"
    (tree / "shared").mkdir(parents=True)
    monkeypatch.setattr(metrics, "__file__", str(tree / "shared" / "metrics.py"))
    return tree


def test_the_baked_in_commit_wins(code_in: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git(code_in, "init", "-q")
    git(code_in, "commit", "-q", "--allow-empty", "-m", "a commit")
    monkeypatch.setenv(metrics.COMMIT_VARIABLE, "0123abcd")
    assert metrics.git_commit() == "0123abcd"


def test_a_checkout_reports_its_head(code_in: Path) -> None:
    git(code_in, "init", "-q")
    git(code_in, "commit", "-q", "--allow-empty", "-m", "a commit")
    head = git(code_in, "rev-parse", "HEAD")
    assert len(head) == 40
    assert metrics.git_commit() == head


def test_installed_code_inside_another_repository_reports_unknown(code_in: Path) -> None:
    enclosing = code_in.parent
    assert not (code_in / ".git").exists()
    git(enclosing, "init", "-q")  # e.g. a virtualenv inside someone's project
    git(enclosing, "commit", "-q", "--allow-empty", "-m", "not ours")
    assert metrics.git_commit() == "unknown"


def test_a_checkout_without_commits_reports_unknown(code_in: Path) -> None:
    git(code_in, "init", "-q")
    assert metrics.git_commit() == "unknown"
