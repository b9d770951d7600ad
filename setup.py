"""Build the optional C speedups (sigmw/diameter/_speedups.c with _hotpath.c, _shed.c,
_shedsend.c and _direct.c, and sigmw/io/_mmsg.c); everything else is in pyproject.toml.
Without a C compiler the install still succeeds (optional=True) and sigmw runs on the
pure-Python reference code, only slower (the daemon logs which)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sigmw.diameter._speedups",
            [
                "sigmw/diameter/_speedups.c",
                "sigmw/diameter/_hotpath.c",
                "sigmw/diameter/_shed.c",
                "sigmw/diameter/_shedsend.c",
                "sigmw/diameter/_direct.c",
            ],
            depends=["sigmw/diameter/_speedups.h", "sigmw/io/_recvbatch.h"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(
            "sigmw.io._mmsg",
            ["sigmw/io/_mmsg.c"],
            depends=["sigmw/io/_recvbatch.h"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
)
