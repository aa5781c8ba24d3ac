"""One module per process kind; each exposes main(argv) and stays a thin loop over library parts."""
