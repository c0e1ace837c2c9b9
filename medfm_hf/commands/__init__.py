"""One module per ``medfm-robust`` subcommand (see :mod:`medfm_hf.cli`)."""
