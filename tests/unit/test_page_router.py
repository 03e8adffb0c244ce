"""shared.http.page_router: pages under the page policy, static files, a page's JSON config."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import FastAPI, Request

from shared.http import PAGE_SECURITY_POLICY, page_router

PAGE = '<script id="config" type="application/json">{{CONFIG}}</script><p>hi</p>'


def app_of(static: Path, with_config: bool) -> FastAPI:
    def config(request: Request) -> dict[str, object]:
        return {"path": request.url.path, "refresh_seconds": 30}

    app = FastAPI()
    app.include_router(page_router(static, {"/": "index.html"}, config if with_config else None))
    return app


async def get(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path)


@pytest.fixture
def static(tmp_path: Path) -> Path:
    (tmp_path / "index.html").write_text(PAGE, encoding="utf-8")
    (tmp_path / "app.js").write_text("let x = 1;", encoding="utf-8")
    return tmp_path


async def test_a_page_gets_its_config_block(static: Path) -> None:
    page = await get(app_of(static, with_config=True), "/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == PAGE_SECURITY_POLICY
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    block = page.text.split('type="application/json">')[1].split("</script>")[0]
    assert orjson.loads(block) == {"path": "/", "refresh_seconds": 30}


async def test_a_page_without_config_is_served_as_it_is(static: Path) -> None:
    page = await get(app_of(static, with_config=False), "/")
    assert page.text == PAGE
    assert page.headers["content-security-policy"] == PAGE_SECURITY_POLICY


async def test_static_files_stay_inside_their_folder(static: Path) -> None:
    app = app_of(static, with_config=True)
    script = await get(app, "/static/app.js")
    assert (script.status_code, script.text) == (200, "let x = 1;")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert (await get(app, "/static/../index.html")).status_code == 404
    assert (await get(app, "/static/none.js")).status_code == 404
