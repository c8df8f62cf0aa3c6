"""The soak test, short: 150 streams with random disconnects and faults, then an overload (`make soak` runs ~1,000)."""

from __future__ import annotations

import pytest

from tests.soak import Options, render, run

pytestmark = pytest.mark.anyio


@pytest.mark.timeout(120)
async def test_short_soak() -> None:
    opts = Options(streams=150, seconds=30, delay_ms=5, seed=7)
    report = await run(opts)
    assert report.ok, render(report, opts)
    assert report.completed > 0 and report.abandoned > 0 and len(report.overload_refused) == opts.overload_extra
