"""Builds what pyproject.toml cannot declare: the optional C speedups, and the bundled data.

- ``collector/protocol/_speedups.c`` has a pure-Python twin for every piece; when it cannot be
  compiled (no C compiler), the install goes on and ``collector.protocol.native`` falls back to
  pure Python (the daemon's ``collector_starting`` log event and ``make bench`` say which one
  runs: ``protocol_core="c"`` or ``"python"``).
- ``specs/`` (the AsyncAPI files) and ``schemas/`` (the table contracts) live at the root of the
  repository, where a checkout (and ``pip install -e``) reads them; a built wheel carries a copy
  in ``collector/_data/`` so that a plain ``pip install`` works too (see ``collector.paths``).
"""

from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = {"specs": "*.asyncapi.yaml", "schemas": "*.yaml"}


class BuildPyWithData(build_py):
    """build_py, plus specs/ and schemas/ copied into collector/_data/ of the build."""

    def run(self) -> None:
        super().run()
        for folder, pattern in BUNDLED.items():
            target = Path(self.build_lib) / "collector" / "_data" / folder
            target.mkdir(parents=True, exist_ok=True)
            for source in sorted((ROOT / folder).glob(pattern)):
                self.copy_file(str(source), str(target / source.name))


setup(
    cmdclass={"build_py": BuildPyWithData},
    ext_modules=[
        Extension(
            "collector.protocol._speedups",
            sources=["collector/protocol/_speedups.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-Wno-missing-field-initializers", "-Wno-cast-function-type"],
            optional=True,
        )
    ],
)
