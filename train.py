"""`python train.py ...` is exactly `vtok ...` (see README.md)."""

from vtok.cli import main

if __name__ == "__main__":
    main()
