"""README.md: it opens with the two commands, its example runs, its links resolve."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from rhosocial_ar import ConnectionManager

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


def test_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    (code,) = [code for language, code in BLOCKS if language == "python"]
    monkeypatch.chdir(tmp_path)
    ConnectionManager.reset()
    try:
        exec(compile(code, str(ROOT / "README.md"), "exec", dont_inherit=True), {"__name__": "readme"})
    finally:
        ConnectionManager.reset()
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["['ann@example.org']", "2 1"]


def test_local_links_resolve() -> None:
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README)
    assert "docs/queries.md" in targets
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
