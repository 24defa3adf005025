"""``python -m jaxpro``: the same command line as the ``jaxpro`` script."""

from jaxpro.cli import main

if __name__ == "__main__":
    main()
