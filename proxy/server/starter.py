"""Which config file a run reads, and the files that ship inside the package.

A wheel installed anywhere has no `./config.yaml`: with no `--config`, the proxy then runs on the
packaged copy of the checkout's config.yaml (the offline mock), and says how to point it at a real model.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGED_CONFIG = Path(__file__).parent / "default_config.yaml"  # a copy of config.yaml (tests/test_install.py)
LOCAL_CONFIG = Path("config.yaml")

REAL_MODEL_HINT = ("for a real model, run `llm-sse-proxy init` (it writes config.yaml here), export the key it "
                   "names, and start again")


@dataclass(frozen=True, slots=True)
class ConfigChoice:
    path: Path
    built_in: bool  # no file was given or found: the packaged offline-mock config


def choose_config(given: str | None) -> ConfigChoice:
    """`--config` if given; else ./config.yaml if there is one; else the packaged offline mock."""
    if given is not None:
        return ConfigChoice(Path(given), built_in=False)
    if LOCAL_CONFIG.is_file():
        return ConfigChoice(LOCAL_CONFIG, built_in=False)
    return ConfigChoice(PACKAGED_CONFIG, built_in=True)


STARTER_CONFIG = Path(__file__).parent / "starter_config.yaml"


def write_starter(argv: list[str]) -> int:
    """`llm-sse-proxy init [PATH]`: a commented config for a real upstream; never overwrites a file."""
    parser = argparse.ArgumentParser(prog="llm-sse-proxy init",
                                     description="Write a commented starter config for a real upstream.")
    parser.add_argument("path", nargs="?", default=str(LOCAL_CONFIG), help="where to write it (default: %(default)s)")
    path = Path(parser.parse_args(argv).path)
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(STARTER_CONFIG.read_text(encoding="utf-8"))
    except FileExistsError:
        print(f"llm-sse-proxy init: {path} already exists; left as it was (name another path)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"llm-sse-proxy init: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {path}: export OPENAI_API_KEY, then run llm-sse-proxy --config {path} (add --mock to try it offline)")
    return 0
