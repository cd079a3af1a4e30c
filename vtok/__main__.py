"""`python -m vtok ...` is exactly `vtok ...`: the form a launcher takes where this checkout's train.py is not at
hand (vtok installed from a wheel), e.g. `accelerate launch -m vtok fit ...`."""

from vtok.cli import main

main()
