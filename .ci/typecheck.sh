#!/usr/bin/env bash
# mypy over the installed namespace. The source folders install as tierflow.agents, ...
# through setup.py's package_dir, and mypy cannot follow setuptools' editable finder, so
# the checker reads a symlink tree that mirrors the installed layout: .typecheck/tierflow/
# holds a link to every entry of tierflow/ plus one per source folder. It is rebuilt on
# every run so that a new module in tierflow/ is seen.
# Usage: .ci/typecheck.sh [python]   (default: .venv/bin/python; the one that has mypy)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
python_bin="${1:-.venv/bin/python}"
[[ "$python_bin" == /* ]] || python_bin="$repo_root/$python_bin"
source_folders=(agents graphs tools model_tiers evals tiers)

rm -rf .typecheck
mkdir -p .typecheck/tierflow
for entry in tierflow/*; do
    case "$(basename "$entry")" in __pycache__) continue ;; esac
    ln -s "../../$entry" .typecheck/tierflow/
done
for folder in "${source_folders[@]}"; do
    ln -s "../../$folder" ".typecheck/tierflow/$folder"
done

cd .typecheck
# pyproject.toml's [tool.mypy] is the configuration; the cache stays in the repository's
# ignored .mypy_cache so that repeated runs are incremental.
exec "$python_bin" -m mypy --config-file "$repo_root/pyproject.toml" --cache-dir "$repo_root/.mypy_cache" -p tierflow
