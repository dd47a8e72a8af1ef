"""The optional C extension: everything else about the package is in pyproject.toml.

bridge/_speedups.c holds C versions of the per-line and per-sample loops (its header says which). `optional`:
without a C compiler the install goes on without it and the Python code runs. Declared here rather than in
pyproject.toml's [tool.setuptools.ext-modules], which setuptools still calls experimental (and warns about).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("bridge._speedups", ["bridge/_speedups.c"], optional=True)])
