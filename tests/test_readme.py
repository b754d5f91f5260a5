"""README.md: it opens with the two commands, its example runs, its links resolve."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from rhosocial_ar import ConnectionManager, registry

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
BLOCKS = [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(README)]


def test_opens_with_the_demo_and_test_commands() -> None:
    before_first_block = README[: README.index("```")]
    assert before_first_block.strip().startswith("#") and before_first_block.count("\n") <= 2
    assert BLOCKS[0] == ("bash", "python3 -m pip install -e . && rhosocial-ar demo\n")
    assert BLOCKS[1] == ("bash", "python3 -m pip install -e '.[test]' && python3 -m pytest -q\n")


def test_ci_runs_the_readme_test_command() -> None:
    done = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--print-test-command"],
                          capture_output=True, text=True, check=True, timeout=30)
    assert done.stdout == BLOCKS[1][1]


def test_example_runs_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """As a reader runs it: twice in the same directory, the second time on the files the
    first left, with the same output."""
    code = [code for language, code in BLOCKS if language == "python"][0]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "_metadata", {})
    outputs = []
    for _ in range(2):
        ConnectionManager.reset()
        try:
            exec(compile(code, str(ROOT / "README.md"), "exec", dont_inherit=True),
                 {"__name__": "readme"})
        finally:
            ConnectionManager.reset()
        outputs.append(capsys.readouterr().out)
    out = outputs[0].splitlines()
    assert out[:2] == ["['ann@example.org']", "2 1"]
    assert outputs[1] == outputs[0] and (tmp_path / "app.db").is_file()


def test_getting_started_runs_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/getting-started.md, run twice in the same directory (its app.db stays)."""
    page = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    blocks = [m.group(2) for m in FENCE.finditer(page) if m.group(1).strip() == "python"]
    assert any("Author.drop_table()" in block for block in blocks)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        monkeypatch.setattr(registry, "_metadata", {})
        ConnectionManager.reset()
        namespace: dict[str, object] = {"__name__": "getting_started"}
        try:
            for block in blocks:
                exec(compile(block, "docs/getting-started.md", "exec", dont_inherit=True), namespace)
        finally:
            ConnectionManager.reset()
        # the page's own asserts ran (ann.id == 1 needs a table made afresh); ann is still there
        assert namespace["ann"].bio == "Writes about databases."
    assert (tmp_path / "app.db").is_file()


def test_local_links_resolve() -> None:
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README)
    assert "docs/queries.md" in targets
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_async_twin_of_the_example_runs_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The quick example's async twin (docs/async.md), on aiosqlite, twice in one directory."""
    pytest.importorskip("aiosqlite", reason="the async extra (pip install -e '.[async]')")
    (code,) = [code for language, code in BLOCKS if language == "python" and "asyncio.run" in code]
    monkeypatch.chdir(tmp_path)
    outputs = []
    for _ in range(2):
        monkeypatch.setattr(registry, "_metadata", {})
        ConnectionManager.reset()
        try:
            exec(compile(code, str(ROOT / "README.md"), "exec", dont_inherit=True),
                 {"__name__": "readme_async"})
        finally:
            ConnectionManager.reset()
        outputs.append(capsys.readouterr().out)
    assert outputs[0].splitlines() == ["['ann@example.org']", "2"] and outputs[1] == outputs[0]
