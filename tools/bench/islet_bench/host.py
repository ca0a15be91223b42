"""The machine and its tools: where a tool is, which version, which cores to pin to."""

import os
import re
import shutil
import subprocess
from typing import Optional, Sequence, Tuple

_SBIN = "/usr/sbin:/sbin:/usr/local/sbin:/usr/local/bin:/usr/bin"  # nginx is in sbin


def find_tool(name: str) -> Optional[str]:
    return shutil.which(name) or shutil.which(name, path=_SBIN)


def output(cmd: Sequence[str], timeout: float = 30) -> Optional[str]:
    """What a command prints (stdout and stderr); None if it fails or is missing."""
    try:
        done = subprocess.run(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace", timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def first_line(cmd: Sequence[str], default: str = "?") -> str:
    text = output(cmd)
    return text.splitlines()[0].strip() if text and text.strip() else default


def package_version(package: str) -> str:
    """A Debian package's version; "?" when it is not installed."""
    return (output(["dpkg-query", "-W", "-f=${Version}", package]) or "").strip() or "?"


def boringssl_version(repo: str) -> str:
    """The BoringSSL version the build compiles from source (BORINGSSL_VERSION in
    bazel/repositories.bzl, e.g. "13.0.0+r24"); "?" when it cannot be read."""
    try:
        with open(os.path.join(repo, "bazel", "repositories.bzl"), encoding="utf-8") as f:
            match = re.search(r'^BORINGSSL_VERSION = "([^"]+)"$', f.read(), re.MULTILINE)
    except OSError:
        return "?"
    return match.group(1) if match else "?"


def nginx_version(nginx: Optional[str]) -> str:
    """"nginx/1.22.1" ("nginx -v" prints to stderr)."""
    line = first_line([nginx, "-v"], "") if nginx else ""
    return line.replace("nginx version: ", "") or "none"


def cores() -> int:
    """The cores this process may run on (as nproc counts them)."""
    return len(os.sched_getaffinity(0))


def pinning() -> Tuple[Optional[int], Optional[int]]:
    """(server core, load core): 0 and 1 when there are two cores to pin to, else none."""
    if cores() >= 2 and output(["taskset", "-c", "0,1", "true"]) is not None:
        return 0, 1
    return None, None


def git_commit(repo: str) -> str:
    """The short commit of `repo`, noting a modified work tree; "?" outside git."""
    head = first_line(["git", "-C", repo, "rev-parse", "--short", "HEAD"])
    modified = output(["git", "-C", repo, "diff", "--quiet"]) is None
    return head + (", work tree modified" if modified else "")
