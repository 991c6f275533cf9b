"""Imported first by every script of this folder, before anything that imports `select`.

Python runs a script with its folder first on sys.path, and this folder holds select.py (the
selection benchmark), which would then stand in for the standard library's `select` module that
subprocess, selectors and torch import (where `select` is not built into the interpreter). This
moves the folder to the end of sys.path and imports the standard library's module, which stays
cached in sys.modules when a script puts the folder first again for `common`.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE] + [_HERE]
import select  # noqa: E402,F401
