"""The docs cannot drift: the configuration reference is regenerated and compared, the README stays short,
and every relative link in README.md and docs/*.md points to a file that exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# Pages other sessions write; a link to them is accepted until they land, then checked like any other.
WRITTEN_ELSEWHERE = {DOCS / "architecture.md"}

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _generator():
    spec = importlib.util.spec_from_file_location("generate_configuration", DOCS / "generate_configuration.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_current():
    expected = _generator().render()
    current = (DOCS / "configuration.md").read_text()
    assert current == expected, "docs/configuration.md is stale: run python docs/generate_configuration.py"


def test_configuration_reference_names_every_key():
    from ingest_core.settings import Settings

    text = (DOCS / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"`{name}" in text


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    assert max(len(line) for line in lines) <= 200


def _pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "bench" / "RESULTS.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_files(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # links inside code blocks are not links
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # an absolute URL or an anchor on the same page
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists() and path not in WRITTEN_ELSEWHERE:
            broken.append(target)
    assert not broken, f"{page.name} links to missing files: {broken}"


def test_no_history_in_docs():
    """Docs and benchmark code describe the present; history lives in git and CHANGELOG.md."""
    pattern = re.compile(r"round [0-9]", re.I)
    pages = [ROOT / "README.md", *DOCS.rglob("*.md"), *(ROOT / "bench").rglob("*.md"), *(ROOT / "bench").rglob("*.py")]
    assert not [p.name for p in pages if pattern.search(p.read_text())]
