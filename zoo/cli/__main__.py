import sys

from zoo.cli import main

if __name__ == "__main__":  # python -m zoo.cli; importing this module runs nothing
    sys.exit(main())
