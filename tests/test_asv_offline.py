"""tools/asv_offline.py: every CDN URL of the installed asv's index.html maps to an npm
package, and the rewrite points index.html at files that exist (npm stood in for by
tarballs built here; the real fetch needs the registry and is run by hand)."""

from __future__ import annotations

import functools
import importlib.util
import io
import re
import shutil
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def tool() -> ModuleType:
    """tools/ is not a package: load the script as a module (registered, as dataclasses
    look their module up in sys.modules)."""
    spec = importlib.util.spec_from_file_location("asv_offline", ROOT / "tools/asv_offline.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["asv_offline"] = module
    spec.loader.exec_module(module)
    return module


def asv_www() -> Path:
    asv = pytest.importorskip("asv")
    return Path(asv.__file__).parent / "www"


def test_every_cdn_url_of_asvs_index_maps_to_an_npm_file() -> None:
    t = tool()
    text = (asv_www() / "index.html").read_text(encoding="utf-8")
    urls = [m[3] for m in t.TAG.finditer(text)]
    assert len(urls) >= 9  # jquery, 4 flot, orderBars, stupidtable, md5, bootstrap js + css
    assets = [t.asset(u) for u in urls]
    assert {a.package for a in assets} >= {"jquery", "flot", "bootstrap", "blueimp-md5"}
    assert all(re.fullmatch(r"[\d.]+", a.version) and not a.path.startswith("/")
               for a in assets)
    with pytest.raises(SystemExit, match=r"no npm package known for https://example\.org/x\.js"):
        t.asset("https://example.org/x.js")


def test_localise_rewrites_index_to_the_unpacked_packages(tmp_path: Path) -> None:
    t = tool()
    html = tmp_path / "html"
    shutil.copytree(asv_www(), html)
    wanted = {(a.package, a.version): [] for a in map(t.asset, (
        m[3] for m in t.TAG.finditer((html / "index.html").read_text(encoding="utf-8"))))}
    for m in t.TAG.finditer((html / "index.html").read_text(encoding="utf-8")):
        a = t.asset(m[3])
        wanted[(a.package, a.version)].append(a.path)

    def fake_pack(package: str, version: str) -> Path:
        tgz = tmp_path / f"{package}-{version}.tgz"
        with tarfile.open(tgz, "w:gz") as tar:
            for path in ["package.json", *wanted[(package, version)]]:
                data = f"/* {package} {path} */".encode()
                info = tarfile.TarInfo(f"package/{path}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return tgz

    assets = t.localise(html, fetch=fake_pack)
    text = (html / "index.html").read_text(encoding="utf-8")
    assert not list(t.TAG.finditer(text))  # no script or stylesheet from the network left
    for a in assets:
        assert f'"{a.local}"' in text and (html / a.local).is_file()
    assert "https://github.com/airspeed-velocity/asv/" in text  # plain links stay
    # a package without the file a URL names: an error, not a page that half loads
    shutil.rmtree(html)
    shutil.copytree(asv_www(), html)
    wanted = {k: [] for k in wanted}
    with pytest.raises(SystemExit, match="has no"):
        t.localise(html, fetch=fake_pack)
    with pytest.raises(SystemExit, match="run `asv publish` first"):
        t.localise(tmp_path / "missing", fetch=fake_pack)
