"""MNIST data: the IDX file format, fetching and verifying the files, and the seeded splits."""
