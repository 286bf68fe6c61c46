"""The pytest plugin: ``gsim_sandbox`` in this suite, and in a fresh pytest session."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest

import gsim_async
from gsim_async.pytest_plugin import GsimSandbox

ROOT = Path(gsim_async.__file__).resolve().parent.parent


@pytest.mark.anyio
async def test_fixture_gives_a_client_of_a_running_sandbox(gsim_sandbox: GsimSandbox) -> None:
    async with gsim_sandbox.client.orders.activation("telegram", "russia") as act:
        code = await act.wait_for_code(timeout=5)  # codes arrive by themselves, quickly
    assert gsim_sandbox.sandbox.order(act.order.id).sms_code == code
    assert gsim_sandbox.ledger().balanced


@pytest.mark.anyio
@pytest.mark.gsim_sandbox(auto_deliver=False, balance="1.50")
async def test_marker_options_reach_the_sandbox(gsim_sandbox: GsimSandbox) -> None:
    assert (await gsim_sandbox.client.balance()).balance == Decimal("1.50")
    order = await gsim_sandbox.client.orders.create("telegram", "russia")
    assert gsim_sandbox.deliver_code(order, "314159") == "314159"
    assert await gsim_sandbox.client.orders.wait_for_code(order, timeout=5) == "314159"


@pytest.mark.anyio
async def test_code_making_its_own_client_reaches_the_sandbox(gsim_sandbox: GsimSandbox) -> None:
    assert os.environ["GSIM_BASE_URL"] == gsim_sandbox.base_url
    async with gsim_async.Client() as gsim:  # from GSIM_API_KEY / GSIM_BASE_URL
        await gsim.orders.create("telegram", "russia")
    assert len(gsim_sandbox.sandbox.orders()) == 1


USER_TESTS = """
    import os

    import pytest

    pytestmark = pytest.mark.anyio
    BEFORE = os.environ.get("GSIM_BASE_URL")

    async def test_buys(gsim_sandbox):
        order = await gsim_sandbox.client.orders.create("telegram", "russia")
        assert order.status == "PENDING"

    @pytest.mark.gsim_sandbox(no_code_ratio=1.0)
    async def test_no_code(gsim_sandbox):
        async with gsim_sandbox.client.orders.activation("telegram", "russia") as act:
            with pytest.raises(Exception):
                await act.wait_for_code(timeout=0.2)
        assert gsim_sandbox.ledger().refunded == act.order.price

    def test_sync_use_fails_clearly(gsim_sandbox):
        pass

    def test_environment_is_restored_afterwards():
        assert os.environ.get("GSIM_BASE_URL") == BEFORE
"""


def user_project(tmp_path: Path, tests: str) -> None:
    """A user's project: its tests, and a pytest.ini so no configuration above it counts."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_user.py").write_text(textwrap.dedent(tests))


def test_a_fresh_session_finds_the_fixture_through_the_entry_point(tmp_path: Path) -> None:
    user_project(tmp_path, USER_TESTS)
    # -p no:asyncio: a user with anyio alone (pytest-asyncio is in our test extra).
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:asyncio",
         "--strict-markers", "-W", "error", "test_user.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert "3 passed, 1 error" in result.stdout, result.stdout + result.stderr
    assert "gsim_sandbox is an async fixture: use it from an async test marked" in result.stdout


def run_pytest_asyncio(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Run tmp_path's test_user.py in a fresh session with pytest-asyncio (and -W error)."""
    return subprocess.run(  # noqa: S603 (our own interpreter and a file we wrote)
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
         *options, "test_user.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def test_works_with_pytest_asyncio_too(tmp_path: Path) -> None:
    user_project(
        tmp_path,
        """
            import pytest

            @pytest.mark.asyncio
            async def test_buys(gsim_sandbox):
                order = await gsim_sandbox.client.orders.create("telegram", "russia")
                assert gsim_sandbox.deliver_code(order) == (
                    await gsim_sandbox.client.orders.wait_for_code(order)
                )
        """,
    )
    result = run_pytest_asyncio(tmp_path, "-o", "asyncio_default_fixture_loop_scope=function")
    assert "1 passed" in result.stdout, result.stdout + result.stderr


MODULE_LOOP_TESTS = """
    import pytest

    pytestmark = pytest.mark.asyncio(loop_scope="module")

    async def test_buys(gsim_sandbox):
        order = await gsim_sandbox.client.orders.create("telegram", "russia")
        assert gsim_sandbox.deliver_code(order) == (
            await gsim_sandbox.client.orders.wait_for_code(order)
        )
"""


def test_a_module_scoped_test_loop_with_function_scoped_fixtures_fails_at_once(
    tmp_path: Path,
) -> None:
    # The client would be bound to the fixture's loop and hang in the test's: it used to
    # end after ~155 s in "a purchase ... may have been charged".
    user_project(tmp_path, MODULE_LOOP_TESTS)
    started = time.monotonic()
    result = run_pytest_asyncio(tmp_path, "-o", "asyncio_default_fixture_loop_scope=function")
    assert time.monotonic() - started < 30
    output = result.stdout + result.stderr
    assert "1 failed" in result.stdout, output
    assert "may have been charged" not in output
    assert "runs in pytest-asyncio's module-scoped event loop" in output
    assert "Set asyncio_default_fixture_loop_scope = module" in output


def test_a_module_scoped_test_loop_works_with_fixtures_in_the_same_loop(tmp_path: Path) -> None:
    user_project(tmp_path, MODULE_LOOP_TESTS)
    result = run_pytest_asyncio(tmp_path, "-o", "asyncio_default_fixture_loop_scope=module")
    assert "1 passed" in result.stdout, result.stdout + result.stderr
