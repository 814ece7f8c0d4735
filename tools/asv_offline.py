"""Make `asv publish`'s HTML render without the network.

    asv publish && python tools/asv_offline.py [HTML_DIR]

asv 0.6's `www/index.html` loads jQuery, flot (and its plugins), stupidtable, blueimp-md5
and Bootstrap from CDNs (code.jquery.com, cdnjs, jsdelivr), so the published pages stay
blank without the network. This step, run after `asv publish` on a machine with access to
the npm registry, fetches the exact releases those URLs name through `npm pack` (cached in
`~/.cache/matmul-harness/npm`), unpacks each into `HTML_DIR/vendor/NAME@VERSION/` and
points index.html at the local copies. Nothing is copied into this repository: the files
live only in the published folder (default: asv.conf.json's `html_dir`, `.asv/html`).

A URL this table does not know (a newer asv) is an error naming it; nothing is rewritten
then. `matmul-harness report` needs none of this: its HTML is one self-contained file.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "matmul-harness/npm"
# <script src="https://..."> and <link href="https://...">; links to pages (<a>) stay.
TAG = re.compile(r'<(script|link)\b[^>]*?\b(src|href)="(https?://[^"]+)"')
# cdnjs library -> npm package. stupidtable 1.0.1 was never published to npm; its next
# release there, 1.1.3, keeps the `$.fn.stupidtable` API asv calls.
CDNJS = {"flot": ("flot", None), "stupidtable": ("stupid-table-plugin", "1.1.3"),
         "blueimp-md5": ("blueimp-md5", None)}


@dataclass(frozen=True)
class Asset:
    url: str
    package: str  # npm package
    version: str
    path: str  # inside the package

    @property
    def local(self) -> str:
        return f"vendor/{self.package}@{self.version}/{self.path}"


def asset(url: str) -> Asset:
    """The npm package, release and file behind one of asv's CDN URLs."""
    if m := re.fullmatch(r"https://cdn\.jsdelivr\.net/npm/([^@/]+)@([^/]+)/(.+)", url):
        return Asset(url, m[1], m[2], m[3])
    if m := re.fullmatch(r"https://code\.jquery\.com/jquery-([\d.]+)\.min\.js", url):
        return Asset(url, "jquery", m[1], "dist/jquery.min.js")
    m = re.fullmatch(r"https://cdnjs\.cloudflare\.com/ajax/libs/([^/]+)/([^/]+)/(.+)", url)
    if m and m[1] in CDNJS:
        package, version = CDNJS[m[1]]
        path = m[3]
        if m[1] == "flot":  # the npm package ships the plain files, not .min.js
            path = path.replace(".min.js", ".js")
        return Asset(url, package, version or m[2], path)
    raise SystemExit(f"asv_offline: no npm package known for {url}; expected a jsdelivr npm "
                     f"URL, code.jquery.com or cdnjs {', '.join(CDNJS)} (a newer asv? extend "
                     "tools/asv_offline.py)")


def npm_pack(package: str, version: str) -> Path:
    """The package's tarball, from the cache or `npm pack` (the registry's own client)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    tgz = CACHE / f"{package}-{version}.tgz"
    if not tgz.is_file():
        if shutil.which("npm") is None:
            raise SystemExit("asv_offline: npm is not installed; it fetches the pinned "
                             "packages (or use matmul-harness report: self-contained HTML)")
        out = subprocess.run(["npm", "pack", "-q", f"{package}@{version}",
                              "--pack-destination", str(CACHE)], capture_output=True,
                             text=True, timeout=300)
        if out.returncode != 0 or not tgz.is_file():
            why = (out.stderr.strip().splitlines() or ["no message"])[0]
            raise SystemExit(f"asv_offline: npm pack {package}@{version} failed: {why}")
    return tgz


def _copy(package: Path, path: str, dest: Path, a: Asset) -> None:
    """The file index.html names, and what a stylesheet loads with url(...) (Bootstrap's
    fonts): not the whole package (Bootstrap's is 11 MB with its docs)."""
    src = package / path
    if not src.is_file():
        raise SystemExit(f"asv_offline: {a.package}@{a.version} has no {path} (for {a.url})")
    (dest / path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest / path)
    if path.endswith(".css"):
        text = src.read_text(encoding="utf-8", errors="replace")
        for ref in set(re.findall(r"url\(['\"]?([^'\")?#]+)", text)):
            if ref.startswith(("data:", "http:", "https:", "/")):
                continue
            rel = (Path(path).parent / ref).as_posix()
            norm = os.path.normpath(rel)
            if (package / norm).is_file() and not norm.startswith(".."):
                (dest / norm).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(package / norm, dest / norm)


def localise(html_dir: Path, fetch: Callable[[str, str], Path] = npm_pack) -> list[Asset]:
    """Fetch every CDN asset of html_dir/index.html into html_dir/vendor and rewrite it."""
    index = html_dir / "index.html"
    if not index.is_file():
        raise SystemExit(f"asv_offline: {index} not found; run `asv publish` first (it "
                         "writes asv.conf.json's html_dir)")
    text = index.read_text(encoding="utf-8")
    assets = [asset(m[3]) for m in TAG.finditer(text)]  # every URL known before any change
    for a in assets:
        if not (html_dir / a.local).is_file():
            with tempfile.TemporaryDirectory() as tmp, tarfile.open(fetch(a.package,
                                                                          a.version)) as tar:
                tar.extractall(tmp, filter="data")
                # npm packs into package/, a few old packages into another single folder
                tops = list(Path(tmp).iterdir())
                if len(tops) != 1 or not tops[0].is_dir():
                    raise SystemExit(f"asv_offline: {a.package}@{a.version}: expected one "
                                     "folder in the npm tarball")
                _copy(tops[0], a.path, html_dir / "vendor" / f"{a.package}@{a.version}", a)
        text = text.replace(f'"{a.url}"', f'"{a.local}"')
    index.write_text(text, encoding="utf-8")
    return assets


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("html_dir", nargs="?", type=Path,
                   help="asv publish's output (default: asv.conf.json's html_dir)")
    args = p.parse_args()
    html_dir = args.html_dir
    if html_dir is None:
        from asv.util import load_json

        conf = load_json(str(ROOT / "asv.conf.json"), js_comments=True)
        html_dir = ROOT / conf.get("html_dir", "html")
    assets = localise(html_dir)
    print(f"asv_offline: {len(assets)} CDN files now local under {html_dir / 'vendor'}; "
          f"open {html_dir / 'index.html'} through `asv preview` (browsers block file:// "
          "data loads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
