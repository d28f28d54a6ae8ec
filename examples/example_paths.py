"""Where the examples write their files: `--out DIR` on the command line, else $MDFBRIDGE_EXAMPLES_OUT, else
`examples/out/` next to the scripts (git ignores it)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Optional, Sequence

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out"


def output_dir(description: str, argv: Optional[Sequence[str]] = None) -> Path:
    """Parse the example's command line (`--out DIR`) and return the folder to write into (created)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the files the example writes (default: $MDFBRIDGE_EXAMPLES_OUT, "
                             f"else {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    out = args.out or Path(os.environ.get("MDFBRIDGE_EXAMPLES_OUT") or DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)
    return out
