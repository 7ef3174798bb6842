"""`mmembed serve`: the JSON API (in-process) and the search page in a real headless Chromium."""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import mmembed
from mmembed.loaders.sample_pdfs import write_sample_pdfs

pytest.importorskip("fastapi", reason="mmembed-core[serve] is not installed")
from fastapi.testclient import TestClient

from mmembed.serve import PageServer, allowed_hosts, create_app, open_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def served_index(tmp_path_factory: pytest.TempPathFactory, tiny_colqwen2_5: Path) -> Path:
    """Two sample PDFs (6 pages) indexed at low resolution with the tiny ColQwen2.5."""
    docs = tmp_path_factory.mktemp("serve_docs")
    pdfs = sorted(write_sample_pdfs(docs))
    pdfs[2].unlink()  # kept back: another process adds it while the server runs
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5))
    path = tmp_path_factory.mktemp("serve_index") / "index"
    with mmembed.open_index(path, encoder=encoder.info) as index:
        mmembed.index_documents(pdfs[:2], index, encoder, dpi=36, progress=False)
    return path


@pytest.fixture(scope="module")
def server(served_index: Path) -> Iterator[PageServer]:
    page_server = open_server(served_index)
    yield page_server
    page_server.index.close()


@pytest.fixture(scope="module")
def client(server: PageServer) -> TestClient:
    return TestClient(create_app(server, max_k=8, max_query_chars=64), base_url="http://127.0.0.1:8000")


@pytest.mark.parametrize(
    ("host", "hosts", "status"),
    [
        ("evil.example.com", None, 400),  # DNS rebinding: a foreign name resolving to 127.0.0.1
        ("localhost:8000", None, 200),
        ("[::1]:8000", None, 200),
        ("search.lan", allowed_hosts("127.0.0.1", ["search.lan"]), 200),
        ("evil.example.com", allowed_hosts("127.0.0.1", ["search.lan"]), 400),
        ("10.1.2.3:8000", allowed_hosts("10.1.2.3"), 200),
    ],
)
def test_only_the_bound_host_names_are_answered(
    server: PageServer, host: str, hosts: list[str] | None, status: int
) -> None:
    app = create_app(server, hosts=hosts)
    response = TestClient(app, base_url="http://127.0.0.1:8000").get("/sources", headers={"host": host})
    assert response.status_code == status, response.text


def test_search_returns_pages_with_thumbnails(client: TestClient) -> None:
    response = client.get("/search", params={"q": "revenue by quarter", "k": 4})
    assert response.status_code == 200
    hits = response.json()["hits"]
    assert len(hits) == 4
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    thumb = client.get(hits[0]["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size[0] > 0
    page = client.get(hits[0]["image"])
    assert page.headers["content-type"] == "image/png"
    # The full page is rendered from the source, larger than the thumbnail.
    assert Image.open(io.BytesIO(page.content)).size[0] > Image.open(io.BytesIO(thumb.content)).size[0]


def test_filters(client: TestClient, server: PageServer) -> None:
    sources = client.get("/sources").json()["sources"]
    first = sources[0]["source"]
    hits = client.get("/search", params={"q": "x", "k": 8, "source": first, "page_min": 2}).json()["hits"]
    assert hits and {(h["source"], h["page"] >= 2) for h in hits} == {(first, True)}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": "x", "k": 9}, "less than or equal to 8"),
        ({"q": "x", "k": 0}, "greater than or equal to 1"),
        ({"q": "x" * 65}, "at most 64 characters"),
        ({"q": ""}, "at least 1 character"),
        ({"q": "   "}, "q is blank"),
    ],
)
def test_bounds_are_enforced(client: TestClient, params: dict[str, Any], message: str) -> None:
    response = client.get("/search", params=params)
    assert response.status_code == 422
    assert message in str(response.json()["detail"])


@pytest.mark.parametrize("page_id", ["..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "nope-p1"])
def test_only_pages_of_the_index_are_served(client: TestClient, page_id: str) -> None:
    for route in ("image", "thumbnail"):
        response = client.get(f"/pages/{page_id}/{route}")
        assert response.status_code == 404
        assert b"root:" not in response.content


def test_gone_source_falls_back_to_the_thumbnail(
    client: TestClient, server: PageServer, tmp_path: Path
) -> None:
    from mmembed.types import PageRecord

    record = next(server.index.records())
    gone = PageRecord(
        record.id + "x", str(tmp_path / "moved.pdf"), 1, record.content_hash, {}, record.thumbnail
    )
    image = server.page_image(gone)
    assert image is not None and image.size == Image.open(io.BytesIO(record.thumbnail or b"")).size


def test_new_pages_show_up_while_serving(
    client: TestClient, served_index: Path, tiny_colqwen2_5: Path
) -> None:
    before = client.get("/sources").json()
    extra = sorted(write_sample_pdfs(served_index.parent / "more"))[2]  # the one kept back
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5))
    with mmembed.open_index(served_index) as writer:  # a second handle, as another process would
        mmembed.index_documents([extra], writer, encoder, dpi=36, progress=False)
    after = client.get("/sources").json()
    assert after["pages"] == before["pages"] + 3
    hits = client.get("/search", params={"q": "x", "k": 8, "source": str(extra)}).json()["hits"]
    assert len(hits) == 3


def test_missing_web_extra_is_actionable(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from mmembed import serve

    real_import = builtins.__import__

    def no_uvicorn(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uvicorn":
            raise ImportError("No module named 'uvicorn'", name="uvicorn")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvicorn)
    with pytest.raises(mmembed.MMEmbedError, match=r"pip install 'mmembed-core\[serve\]'"):
        serve._require_web()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_url(server: PageServer) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(create_app(server), host="127.0.0.1", port=port, log_level="warning")
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not web.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    web.should_exit = True
    thread.join(timeout=10)


@pytest.mark.timeout(240)
def test_search_page_in_headless_chromium(live_url: str, tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.skip(
            "no chromium on PATH (make venv installs Debian's chromium as root); browser test skipped"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.goto(live_url)
            page.wait_for_function("document.querySelectorAll('#source option').length > 1")
            page.fill("#q", "quarterly revenue table")
            page.fill("#k", "6")
            page.click("button[type=submit]")
            page.wait_for_selector(".hit img")
            cards = page.locator(".hit")
            assert cards.count() == 6
            # Every thumbnail actually decoded in the browser.
            page.wait_for_function(
                "[...document.querySelectorAll('.hit img')].every(i => i.complete && i.naturalWidth > 0)"
            )
            assert "page" in cards.first.inner_text()
            page.screenshot(path=str(tmp_path / "search-results.png"))

            cards.first.click()
            page.wait_for_selector("#viewer.open")
            page.wait_for_function(
                "(() => { const i = document.getElementById('page-image'); "
                "return i.complete && i.naturalWidth > 0 && i.dataset.kind === 'page'; })()"
            )
            page.check("#overlay")
            page.wait_for_function(
                "(() => { const i = document.getElementById('page-image'); "
                "return i.dataset.kind === 'overlay' && i.complete && i.naturalWidth > 0; })()",
                timeout=120_000,
            )
            assert page.inner_text("#viewer-error") == ""
            page.screenshot(path=str(tmp_path / "page-overlay.png"))
        finally:
            browser.close()
    assert (tmp_path / "search-results.png").stat().st_size > 10_000
    print(f"screenshots: {tmp_path}")


def test_cli_serve_runs_on_loopback(served_index: Path, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys
    import urllib.request

    from mmembed.cli import build_parser, main

    assert build_parser().parse_args(["serve", "--index", "x"]).host == "127.0.0.1"
    assert main(["serve", "--index", str(tmp_path / "missing")]) == 1
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mmembed.cli",
        "serve",
        "--index",
        str(served_index),
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/sources", timeout=5) as response:
                    assert json.load(response)["pages"] >= 6
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"mmembed serve did not come up: {process.stderr.read() if process.stderr else ''!r}"
                    )
                time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)
