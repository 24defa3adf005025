"""Small data sets bundled with jaxpro (used by ``jaxpro demo``); see README.md here.

Load a file with :func:`importlib.resources.files`, e.g.
``importlib.resources.files("jaxpro.data") / "decay.csv"``.
"""
