"""AnimateDiff-Evolved for the side-by-side tests: where it is found, and how a copy goes into a custom_nodes folder.

Looked for, in order: ``$KINEMA_EVOLVED`` (a git checkout or a bare git dir), ``~/.cache/kinema/
ComfyUI-AnimateDiff-Evolved`` (what ``scripts/get_evolved.sh`` clones, pinned), and the bare snapshot that
``bench/bench_vs_incumbent.py`` reads. Either kind is copied with ``git archive`` of its HEAD, so the tests never
write into it.

    python tests/host/_evolved.py      # prints the source found and its commit, or why none
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DIR_NAME = "ComfyUI-AnimateDiff-Evolved"
CACHE = Path.home() / ".cache" / "kinema" / DIR_NAME
MIRROR = Path("/work/.mirror/Kosinkadink+ComfyUI-AnimateDiff-Evolved/repo")  # bench_vs_incumbent.EVOLVED_GIT
HOW = "run `bash scripts/get_evolved.sh` (clones it into ~/.cache/kinema) or set KINEMA_EVOLVED to a checkout"


def _git(source: Path) -> list[str]:
    """``git`` addressing ``source``: a bare git dir (HEAD and objects/ at its top) or a work tree."""
    bare = (source / "HEAD").is_file() and (source / "objects").is_dir()
    return ["git", f"--git-dir={source}"] if bare else ["git", "-C", str(source)]


def commit_of(source: Path) -> str | None:
    """The HEAD commit of ``source``, or None when it is not a git repository of Evolved."""
    try:
        head = subprocess.run([*_git(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
        listed = subprocess.run([*_git(source), "cat-file", "-e", "HEAD:animatediff/sampling.py"],
                                capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() if head.returncode == 0 and listed.returncode == 0 else None


def find_evolved() -> tuple[Path | None, str]:
    """(source, "") for the first usable Evolved repository, else (None, one line saying where we looked and how)."""
    env = os.environ.get("KINEMA_EVOLVED")
    candidates = [Path(env).expanduser()] if env else []
    candidates += [CACHE, MIRROR]
    for path in candidates:
        if path.is_dir() and commit_of(path):
            return path, ""
    looked = ", ".join(str(p) for p in candidates)
    return None, f"AnimateDiff-Evolved not found (looked in {looked}): {HOW}"


def install_evolved(source: Path, custom_nodes: Path) -> Path:
    """Copy Evolved's HEAD into ``custom_nodes/ComfyUI-AnimateDiff-Evolved`` (git archive | tar); returns it."""
    target = custom_nodes / DIR_NAME
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen([*_git(source), "archive", "HEAD"], stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", str(target)], stdin=archive.stdout, capture_output=True, timeout=120)
    archive.stdout.close()
    if archive.wait(timeout=120) or untar.returncode:
        raise RuntimeError(f"could not copy AnimateDiff-Evolved from {source}: {untar.stderr.decode()[-500:]}")
    return target


if __name__ == "__main__":
    found, why = find_evolved()
    print(f"{found} @ {commit_of(found)}" if found else why)
    sys.exit(0 if found else 1)
