"""``python -m prover``: the zkcare command line (see :mod:`prover.cli`)."""

from prover.cli import main

if __name__ == "__main__":
    main()
