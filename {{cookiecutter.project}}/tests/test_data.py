"""Tables in and out, and `make refresh`: fresh data arrives whole or not at all."""

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from tumor_classifier import data
from tumor_classifier.cli import UserError
from tumor_classifier.params import Data


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
    data.refresh(str(folder / "fresh.csv"), folder / "raw.csv")
    assert (folder / "raw.csv").read_text() == "x,label\n1,a\n2,b\n"


def test_refresh_from_a_url(folder: Path, url: str) -> None:
    data.refresh(f"{url}/fresh.csv", folder / "raw.csv")
    assert (folder / "raw.csv").read_text().endswith("2,b\n")


def test_a_failed_refresh_keeps_the_old_data(folder: Path, url: str) -> None:
    with pytest.raises(UserError, match="cannot fetch"):
        data.refresh(f"{url}/missing.csv", folder / "raw.csv")
    assert (folder / "raw.csv").read_text() == "x,label\n1,a\n"
    assert [p.name for p in folder.iterdir() if p.suffix == ".download"] == []


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_text_columns_keep_their_nulls_in_every_format(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame({"plan": ["a", None], "label": ["1", "0"], "x": [1.0, None]})
    path = tmp_path / f"t{suffix}"
    {
        ".csv": lambda: frame.to_csv(path, index=False),
        ".parquet": lambda: frame.to_parquet(path),
        ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
    }[suffix]()
    read = data.read_table(path, Data(target="label", categorical=["plan"]))
    assert read["plan"].tolist()[0] == "a"
    assert pd.isna(read["plan"].tolist()[1])
    assert read["label"].tolist() == ["1", "0"]


def test_unreadable_tables_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserError, match="cannot be read as csv"):
        data.read_table(tmp_path / "empty.csv")
    with pytest.raises(UserError, match="unsupported format"):
        data.read_table(tmp_path / "table.xlsx")
