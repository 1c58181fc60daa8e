"""Podman with no registry: a private configuration, and base images that debootstrap makes.

Nothing can be pulled here, so the base a Dockerfile names in FROM is made locally: Debian bookworm
(minbase) with its Python 3.11, imported under that name. Made once, the root filesystem is cached
under the user's cache folder for every FROM of Python 3.11. Builds then run with --pull=never.
Podman's settings suit a machine with hybrid cgroups and no systemd, and keep its storage in the
caller's folder.
"""

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CONTAINERS_CONF = """\
[containers]
# The default ulimits ask for more than the hard limits here.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{root}/tmp"
volume_path = "{root}/volumes"
"""
STORAGE_CONF = """\
[storage]
driver = "overlay"
runroot = "{root}/run"
graphroot = "{root}/storage"
"""
SUITE = "bookworm"  # its Python is 3.11, so only a Dockerfile FROM Python 3.11 gets a base
PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
# Left out of the base, as Debian's slim images leave them out: documentation and apt's caches.
LEFT_OUT = (
    *("usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*"),
    *("var/lib/apt/lists/*_*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb"),
)
EXTRA_CAS = Path("/usr/local/share/ca-certificates")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlops-template"
FROM = re.compile(r"^(FROM\s+(?:--\S+\s+)*)(\S+?)(@sha256:[0-9a-f]{64})?(\s|$)", re.MULTILINE)


def missing() -> str | None:
    """Why images cannot be built and run here, or None when they can."""
    for tool in ("podman", "runc", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} not found: apt-get install podman runc debootstrap"
    if os.geteuid() != 0:
        return "debootstrap and podman's storage in a private folder need root"
    return None


def mirror() -> str:
    """The Debian mirror apt is configured with (one-line or deb822 sources)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        text = path.read_text() if path.is_file() else ""
        found = re.findall(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+\S+", text, re.MULTILINE)
        found += re.findall(r"^URIs:\s*(\S+)", text, re.MULTILINE)
        for uri in found:
            if not uri.rstrip("/").endswith("-security"):
                return str(uri)
    raise RuntimeError("no Debian mirror in apt's sources")


class Podman:
    """podman with its configuration and storage under root."""

    def __init__(self, root: Path) -> None:
        (root / "containers.conf").write_text(CONTAINERS_CONF.format(root=root))
        (root / "storage.conf").write_text(STORAGE_CONF.format(root=root))
        self.conf = {
            "CONTAINERS_CONF": str(root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
        }
        self.env = os.environ | self.conf

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 1800
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {result.stderr[-3000:]}")
        return result

    def base(self, name: str) -> None:
        """Import the local stand-in for an image name of Python 3.11, unless it is there."""
        if not re.fullmatch(r"(docker\.io/library/)?python:3\.11[-.\w]*", name):
            raise RuntimeError(f"{name}: the local base is Debian {SUITE}, whose Python is 3.11")
        if self("image", "exists", name, check=False).returncode != 0:
            self("import", "--change", "ENV LANG=C.UTF-8", str(rootfs()), name)

    def local_dockerfile(self, dockerfile: Path, out: Path) -> Path:
        """A copy of dockerfile FROM local stand-ins of its bases: no digest left to pull."""
        text = dockerfile.read_text()
        for match in FROM.finditer(text):
            self.base(match[2])
        out.write_text(FROM.sub(r"\1\2\4", text))
        return out


def sh(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=1800)


def rootfs() -> Path:
    """The base's root filesystem as a tar: debootstrap's, once per recipe and set of CAs."""
    key = hashlib.sha256(f"{SUITE} {PACKAGES} {LEFT_OUT}".encode())
    for ca in sorted(EXTRA_CAS.glob("*.crt")):
        key.update(ca.read_bytes())
    tar = CACHE / "podman-base" / f"{key.hexdigest()[:16]}.tar"
    if tar.is_file():
        return tar
    tar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tar.parent) as tmp:
        root = Path(tmp) / "rootfs"
        include = f"--include={','.join(PACKAGES)}"
        sh("debootstrap", "--variant=minbase", include, SUITE, str(root), mirror())
        # The official images have no such marker, and BentoML's Dockerfile installs uv with pip.
        for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        # Package downloads in a build go through the same TLS-intercepting proxy as here.
        for ca in EXTRA_CAS.glob("*.crt"):
            shutil.copy(ca, root / "usr/local/share/ca-certificates" / ca.name)
        sh("chroot", str(root), "update-ca-certificates")
        # uv (in BentoML's Dockerfile) trusts its own roots unless told to use the system's.
        (root / "etc/uv").mkdir()
        (root / "etc/uv/uv.toml").write_text("native-tls = true\n")
        for pattern in LEFT_OUT:
            for path in root.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        partial = tar.with_suffix(".partial")
        sh("tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), ".")
        partial.rename(tar)
    return tar
