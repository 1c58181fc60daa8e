"""`make refresh`: fresh data arrives whole or not at all."""

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tumor_classifier.cli import UserError
from tumor_classifier.ops import refresh


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "raw.csv").write_text("x,label\n1,a\n")
    (tmp_path / "fresh.csv").write_text("x,label\n1,a\n2,b\n")
    return tmp_path


@pytest.fixture
def url(folder: Path) -> Iterator[str]:
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_refresh_from_a_path(folder: Path) -> None:
    refresh.refresh(str(folder / "fresh.csv"), folder / "raw.csv")
    assert (folder / "raw.csv").read_text() == "x,label\n1,a\n2,b\n"


def test_refresh_from_a_url(folder: Path, url: str) -> None:
    refresh.refresh(f"{url}/fresh.csv", folder / "raw.csv")
    assert (folder / "raw.csv").read_text().endswith("2,b\n")


def test_a_failed_refresh_keeps_the_old_data(folder: Path, url: str) -> None:
    with pytest.raises(UserError, match="cannot fetch"):
        refresh.refresh(f"{url}/missing.csv", folder / "raw.csv")
    assert (folder / "raw.csv").read_text() == "x,label\n1,a\n"
    assert [p.name for p in folder.iterdir() if p.suffix == ".download"] == []
