"""A/B: the proxy's server CPU per relayed chunk at several git revisions (and the floor), in alternating runs.

One run's figure moves by a few µs on a shared machine, as much as a change is worth. Alternating the
variants, run after run, and taking the median of each makes such a change visible.

    python bench/ab.py --revs HEAD~1,WORKTREE --floor --runs 5
    python bench/ab.py --revs WORKTREE --openai-door --runs 5   # the two doors of one checkout

WORKTREE is the working tree, a directory is that checkout; any other revision is checked out into a
temporary `git worktree`. Each is imported from its own tree: a directory whose `llm_sse_proxy` links to
the tree goes on PYTHONPATH, which comes before the editable install's finder. Same pinning and streams as
`make bench`'s CPU phase: 100-chunk zero-delay streams, servers on core 0, mock and client on core 1.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import paths  # noqa: E402
import procs  # noqa: E402
import run  # noqa: E402


OPENAI_DOOR = "openai-door"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--revs", default="HEAD,WORKTREE", help="comma-separated; WORKTREE is the working tree")
    parser.add_argument("--floor", action="store_true", help="add the floor (bench/floor.py) as a variant")
    parser.add_argument("--openai-door", action="store_true",
                        help="add the working tree's /v1/chat/completions as a variant (OpenAI's chunks)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="per concurrency level and run")
    parser.add_argument("--concurrency", default="10,100")
    parser.add_argument("--chunks", type=int, default=run.CHUNKS, help="per stream; 1 shows the per-request cost")
    args = parser.parse_args()
    run.prepare_machine()
    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        work = Path(tmp)
        variants: dict[str, Path | None] = {}
        try:
            for rev in args.revs.split(","):
                variants[rev] = checkout(rev, work)
            if args.floor:
                variants["floor"] = None
            if args.openai_door:
                variants[OPENAI_DOOR] = paths.ROOT
            figures = measure(variants, levels, args, work)
        finally:
            for rev, tree in variants.items():
                if tree is not None and tree.is_relative_to(work):
                    git("worktree", "remove", "--force", str(tree))
    for level in levels:
        for name in variants:
            runs = figures[name, level]
            print(f"c={level:<4} {name:<14} median {statistics.median(runs):6.1f} us/chunk   runs "
                  + " ".join(f"{x:.1f}" for x in runs))
    return 0


def measure(variants: dict[str, Path | None], levels: list[int], args: argparse.Namespace,
            work: Path) -> dict[tuple[str, int], list[float]]:
    figures: dict[tuple[str, int], list[float]] = {(name, level): [] for name in variants for level in levels}
    mock_port = procs.free_port()
    mock = procs.start("mock", [sys.executable, str(paths.BENCH / "mock_upstream.py"), "--port", str(mock_port)],
                       run.LOAD_CORE)
    try:
        procs.wait_listening(mock_port, 10)
        for _ in range(args.runs):
            for name, tree in variants.items():
                if tree is None:
                    spec, env = paths.floor(mock_port), {}
                elif name == OPENAI_DOOR:
                    spec, env = paths.proxy_openai(mock_port, work), importing(tree, work)
                else:
                    spec, env = paths.proxy(mock_port, work, name=safe(name)), importing(tree, work)
                server = procs.start(name, spec.argv, run.SERVER_CORE, env)
                try:
                    if not procs.wait_listening(spec.port, 20):
                        raise SystemExit(f"{name} did not start")
                    run.run_client(spec, "n100-i0", run.CHUNKS, concurrency=10, duration=1)  # warm-up
                    for level in levels:
                        point = run.cpu_point(spec, server, mock, level, 1_000_000, args.seconds, chunks=args.chunks)
                        if point["bad"]:
                            raise SystemExit(f"{name}: {point['bad']} broken streams: {point['errors'][:3]}")
                        figures[name, level].append(point["server_cpu_per_chunk_us"])
                finally:
                    server.stop()
    finally:
        mock.stop()
    return figures


def importing(tree: Path, work: Path) -> dict[str, str]:
    """The environment that imports `llm_sse_proxy` from `tree` (the package's rooms are the tree's top)."""
    where = work / ("import-" + safe(str(tree)))
    if not where.exists():
        where.mkdir()
        (where / "llm_sse_proxy").symlink_to(tree.resolve(), target_is_directory=True)
    return {"PYTHONPATH": str(where)}


def checkout(rev: str, work: Path) -> Path:
    if rev == "WORKTREE":
        return paths.ROOT
    if Path(rev).is_dir():
        return Path(rev)
    tree = work / safe(rev)
    git("worktree", "add", "--detach", str(tree), rev)
    return tree


def safe(rev: str) -> str:
    return "rev-" + "".join(c if c.isalnum() else "_" for c in rev)


def git(*argv: str) -> None:
    subprocess.run(["git", *argv], cwd=paths.ROOT, check=True, capture_output=True, timeout=60)


if __name__ == "__main__":
    sys.exit(main())
