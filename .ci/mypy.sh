#!/usr/bin/env bash
# mypy on the mdfbridge package. The package is assembled from four folders by [tool.setuptools.package-dir]
# (mdfbridge/, importers/ -> mdfbridge.importers, exporters/ -> mdfbridge.exporters, schemas/ -> mdfbridge.schemas),
# which mypy cannot follow from an editable install, so build the package as a tree of symlinks and check that.
# Usage: bash .ci/mypy.sh [PYTHON] [extra mypy arguments...]   (PYTHON defaults to python3; exits non-zero on errors)
set -euo pipefail
PY="${1:-python3}"
shift || true
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac  # a relative path, from here
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TREE="$ROOT/build/mypy-tree"
rm -rf "$TREE"
mkdir -p "$TREE/mdfbridge"
for entry in "$ROOT"/mdfbridge/* "$ROOT"/mdfbridge/.[!.]*; do
    [ -e "$entry" ] || continue
    name="$(basename "$entry")"
    case "$name" in
        importers | exporters | schemas | __pycache__) continue ;;
    esac
    cp -rs "$entry" "$TREE/mdfbridge/$name"
done
ln -s "$ROOT/importers" "$TREE/mdfbridge/importers"
ln -s "$ROOT/exporters" "$TREE/mdfbridge/exporters"
ln -s "$ROOT/schemas" "$TREE/mdfbridge/schemas"
cd "$TREE"
# Report paths as in the repository (mdfbridge/importers/x.py is importers/x.py) so editors can jump to them.
set +e
"$PY" -m mypy --config-file "$ROOT/pyproject.toml" --cache-dir "$ROOT/build/mypy-cache" "$@" -p mdfbridge \
    | sed -E 's#^mdfbridge/(importers|exporters|schemas)/#\1/#'
status=${PIPESTATUS[0]}
exit "$status"
