"""Builds the optional C speedups of the protocol core (everything else is in pyproject.toml).

``collector/protocol/_speedups.c`` has a pure-Python twin for every piece; when it cannot be
compiled (no C compiler), the install goes on and ``collector.protocol.native`` falls back to
pure Python (the daemon's ``collector_starting`` log event and ``make bench`` say which one runs:
``protocol_core="c"`` or ``"python"``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "collector.protocol._speedups",
            sources=["collector/protocol/_speedups.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-Wno-missing-field-initializers", "-Wno-cast-function-type"],
            optional=True,
        )
    ]
)
