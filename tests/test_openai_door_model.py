"""Issue 26, item 8: the door names the model that answered, a fallback perhaps, in every chunk and in
the non-streamed completion, as the article door's terminate does (`model`)."""

from __future__ import annotations

import pytest

from tests.conftest import RESUME_OFF
from tests.test_openai_door import MESSAGES, sdk
from tests.upstream_fixtures import mock_upstream, upstream_config

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


def chain(url_model) -> list[dict]:
    # The asked-for model's upstream is down; its fallback answers.
    return [url_model("gpt", "gpt+fail=99:503", fallbacks=["backup"]), url_model("backup", "b")]


async def test_every_chunk_names_the_fallback_that_answered() -> None:
    async with mock_upstream() as up, sdk(upstream_config(chain(up.model), **RESUME_OFF)) as client:
        chunks = [chunk async for chunk in await client.chat.completions.create(
            model="gpt", messages=MESSAGES, stream=True, stream_options={"include_usage": True})]
    assert len(chunks) > 3 and {chunk.model for chunk in chunks} == {"backup"}


async def test_the_completion_names_the_fallback_that_answered() -> None:
    async with mock_upstream() as up, sdk(upstream_config(chain(up.model), **RESUME_OFF)) as client:
        completion = await client.chat.completions.create(model="gpt", messages=MESSAGES)
    assert completion.model == "backup" and completion.choices[0].message.content


async def test_the_asked_for_model_names_itself_when_it_answers() -> None:
    async with mock_upstream() as up, sdk(upstream_config([up.model("gpt", "g")], **RESUME_OFF)) as client:
        chunks = [chunk async for chunk in await client.chat.completions.create(model="gpt", messages=MESSAGES, stream=True)]
        completion = await client.chat.completions.create(model="gpt", messages=MESSAGES)
    assert {chunk.model for chunk in chunks} == {"gpt"} and completion.model == "gpt"
