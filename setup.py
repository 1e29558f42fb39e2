"""Package layout: the design card's source folders install under one `tierflow` namespace.

`agents/`, `graphs/`, `tools/`, `model_tiers/`, `evals/` and `tiers/` stay top-level in
the repository, and install as `tierflow.agents`, ... so that a user's own `tools/` or
`agents/` package never meets ours. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

SOURCE_FOLDERS = ("agents", "graphs", "tools", "model_tiers", "evals", "tiers")

packages = ["tierflow", *(f"tierflow.{sub}" for sub in find_packages("tierflow"))]
package_dir = {"tierflow": "tierflow"}
for folder in SOURCE_FOLDERS:
    package_dir[f"tierflow.{folder}"] = folder
    packages += [f"tierflow.{folder}", *(f"tierflow.{folder}.{sub}" for sub in find_packages(folder))]

setup(packages=packages, package_dir=package_dir)
