"""Run every ```python example in docs/*.md.

The blocks of one page run in order in one namespace, in a temporary
directory, between two ``ConnectionManager.reset()`` calls, with a model
registry of their own. A block whose first line is ``# not run`` is
skipped; other fences (```text, ```sql) are not code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rhosocial_ar import ConnectionManager, registry

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(path.name for path in DOCS.glob("*.md"))

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
LANGUAGES = {"python", "text", "sql", "bash", "console"}


def fences(page: str) -> list[tuple[str, int, str]]:
    """(language, line of the first code line, code) of every fenced block."""
    source = (DOCS / page).read_text(encoding="utf-8")
    return [
        (m.group(1).strip(), source.count("\n", 0, m.start(2)) + 1, m.group(2))
        for m in FENCE.finditer(source)
    ]


def python_blocks(page: str) -> list[tuple[int, str]]:
    return [
        (line, code)
        for language, line, code in fences(page)
        if language == "python" and not code.lstrip().startswith("# not run")
    ]


def test_pages_exist() -> None:
    expected = {
        "getting-started.md", "connections.md", "models.md", "queries.md",
        "hooks.md", "transactions.md", "errors.md", "migrations.md",
    }
    assert expected <= set(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_fences_are_labelled(page: str) -> None:
    """A typo in a fence's language would silently keep an example from running."""
    for language, line, _ in fences(page):
        assert language in LANGUAGES, f"{page}:{line}: fence language {language!r}"


@pytest.mark.parametrize("page", PAGES)
def test_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(page)
    monkeypatch.chdir(tmp_path)
    # the page's models register their tables in a registry of their own, so
    # create_all() on a page sees that page's models and no other test sees them
    monkeypatch.setattr(registry, "_metadata", {})
    ConnectionManager.reset()
    namespace: dict[str, object] = {"__name__": f"docs_{Path(page).stem.replace('-', '_')}"}
    try:
        for line, code in blocks:
            # pad so tracebacks point at the line in the .md file
            padded = "\n" * (line - 1) + code
            # dont_inherit: this module's `from __future__ import annotations` must not leak
            exec(compile(padded, str(DOCS / page), "exec", dont_inherit=True), namespace)
    finally:
        ConnectionManager.reset()
