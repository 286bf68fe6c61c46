"""The documentation site as a reader meets it: built once, read as HTML.

The site is built as ``nox -s docs`` builds it (the CLI screenshots, then ``mkdocs build
--strict``, which also fails on a cross-reference that resolves to nothing), into a
temporary directory. The checks read the pages a browser would show.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import gsim_async

ROOT = Path(__file__).resolve().parent.parent

#: The longest code line the home page may show without a sideways scroll in a 1,400 px
#: window, by mkdocs-material's own stylesheet: at that width the root font is 20 px
#: (125 %), the grid 61 rem (1,220 px) holds two sidebars of 12.1 rem, leaving 736 px; the
#: content's margins (2 x 1.2 rem) and the code block's padding (2 x 1.18 em of 13.6 px
#: code) leave 656 px, and Roboto Mono's 0.6 em advance at 13.6 px is 8.16 px: 80 columns.
HOME_CODE_COLUMNS = 80

#: The reference's groups, in the order a reader meets them, and a few of each.
GROUPS = {
    "Client": ["Client"],
    "Namespaces": ["_resources._orders.Orders", "_resources._rentals.Rentals"],
    "Waiting for codes": ["wait_for_code", "Activation", "Activations", "WaitResult"],
    "Models": ["Order", "Page", "Balance", "Rental", "Message"],
    "Enums": ["OrderStatus", "RentalStatus", "NumberType", "Direction"],
    "Errors": ["GsimError", "APIError", "NoCodeError", "AttemptsExhaustedError"],
}

#: Classes users receive but never construct: their constructors take our machinery.
NOT_CONSTRUCTED = [
    "Activations",
    "Activation",
    "_resources._orders.Orders",
    "_resources._rentals.Rentals",
]

SPHINX_ROLE = re.compile(r":(?:class|meth|attr|func|data|exc|mod|obj|py:\w+):")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built site (built once for the module)."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (it comes with the test and docs extras)")
    assert (ROOT / "mkdocs.yml").is_file(), f"no mkdocs.yml in {ROOT}"
    out = tmp_path_factory.mktemp("site")

    def run(*args: str) -> None:
        done = subprocess.run(  # noqa: S603 - our own Python, fixed arguments
            [sys.executable, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
            check=False,
        )
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"

    # The CLI guide links to the screenshots, which are built, not kept in git.
    run("scripts/cli_screenshots.py")
    run("-m", "mkdocs", "build", "--strict", "--site-dir", str(out))
    return out


def _page(site: Path, name: str) -> str:
    """The article of one page (navigation and footer left out)."""
    text = (site / name / "index.html" if name else site / "index.html").read_text("utf-8")
    start, end = text.index("<article"), text.index("</article>")
    return text[start:end]


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def _reference_pages(site: Path) -> Iterator[tuple[str, str]]:
    for path in sorted((site / "reference").glob("*/index.html")):
        name = f"reference/{path.parent.name}"
        yield name, _page(site, name)


def _headings(page: str) -> list[tuple[str, str, str]]:
    """Every heading of a page as (id, kind, title); kind "object" is a documented name."""
    return [
        (
            match.group(2),
            "object" if "doc-heading" in (match.group(3) or "") else "group",
            _text(match.group(4)).replace("\u00b6", "").strip(),
        )
        for match in re.finditer(
            r'<h([1-6]) id="([^"]+)"(?: class="([^"]*)")?>(.*?)</h\1>', page, re.S
        )
    ]


def _section(page: str, anchor: str) -> str:
    """From an object's heading to the next documented object's heading (its members')."""
    start = page.index("</h", page.index(f'id="{anchor}"'))
    following = page.find('class="doc doc-heading"', start)
    return page[start : following if following != -1 else len(page)]


def test_the_reference_opens_with_the_client(site: Path) -> None:
    headings = _headings(_page(site, "reference/gsim_async"))
    objects = [anchor for anchor, kind, _ in headings if kind == "object"]
    assert objects[0] == "gsim_async.Client"


def test_the_reference_is_grouped_in_order(site: Path) -> None:
    group_of: dict[str, str] = {}
    titles: list[str] = []
    for anchor, kind, title in _headings(_page(site, "reference/gsim_async")):
        if kind == "group":
            titles.append(title)
        else:
            group_of.setdefault(anchor, titles[-1])
    assert [t for t in titles if t in GROUPS] == list(GROUPS)
    for group, names in GROUPS.items():
        for name in names:
            assert group_of.get(f"gsim_async.{name}") == group, (
                name,
                group_of.get(f"gsim_async.{name}"),
            )
    errors = [a for a in group_of if a.count(".") == 1 and a.endswith("Error")]
    assert errors and all(group_of[a] == "Errors" for a in errors)


def test_every_public_name_is_in_the_reference(site: Path) -> None:
    page = _page(site, "reference/gsim_async")
    missing = [
        name
        for name in gsim_async.__all__
        if name != "__version__" and f'id="gsim_async.{name}"' not in page
    ]
    assert missing == []


def test_no_sphinx_role_is_left_on_a_reference_page(site: Path) -> None:
    for name, page in _reference_pages(site):
        found = SPHINX_ROLE.findall(_text(page))
        assert found == [], f"{name}: {found}"


def test_examples_render_as_code_not_as_quotes(site: Path) -> None:
    # The package docstring opens the page with its example, as a code block.
    first_code = re.search(r"<pre.*?</pre>", _page(site, "reference/gsim_async"), re.S)
    assert first_code is not None
    assert "await gsim.orders.create(" in _text(first_code.group(0))
    for name, page in _reference_pages(site):
        assert "<blockquote" not in page, name
        outside_code = re.sub(r"<pre.*?</pre>", "", page, flags=re.S)
        assert "&gt;&gt;&gt;" not in outside_code and ">>>" not in _text(outside_code), name


@pytest.mark.parametrize("name", NOT_CONSTRUCTED)
def test_classes_users_never_construct_show_no_constructor(site: Path, name: str) -> None:
    own = _section(_page(site, "reference/gsim_async"), f"gsim_async.{name}")
    assert "doc-signature" not in own
    for parameter in ("resolve", "quote", "transport", "ops"):
        assert not re.search(rf"\b{parameter}\b\s*:", _text(own)), parameter


@pytest.mark.parametrize(
    ("page", "target"),
    [
        ("reference/gsim_async", "#gsim_async.Activation"),
        ("reference/gsim_async", "#gsim_async.Client"),
        ("reference/gsim_async", "#gsim_async._resources._orders.Orders.cancel"),
        ("reference/sandbox", "#gsim_async.sandbox.Sandbox.deliver_code"),
        ("reference/sandbox", "#gsim_async.sandbox.Faults"),
        ("reference/sandbox", "#gsim_async.sandbox.Ledger.balanced"),
        ("reference/pytest_plugin", "#gsim_async.pytest_plugin.GsimSandbox"),
        ("reference/pytest_plugin", "../sandbox/#gsim_async.sandbox.Sandbox"),
        ("reference/pytest_plugin", "../gsim_async/#gsim_async.Client"),
    ],
)
def test_cross_references_are_links(site: Path, page: str, target: str) -> None:
    # A link in prose: neither a heading's permalink nor a type in a signature.
    prose = re.sub(r'<div class="doc-signature.*?</pre>', "", _page(site, page), flags=re.S)
    links = re.findall(r'<a [^>]*href="([^"]+)"[^>]*>(?!&para;)', prose)
    assert target in links


def test_the_home_page_code_fits_a_1400px_window(site: Path) -> None:
    for block in re.findall(r"<pre.*?</pre>", _page(site, ""), flags=re.S):
        for line in _text(block).splitlines():
            assert len(line) <= HOME_CODE_COLUMNS, line
